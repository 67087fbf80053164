"""Installer tools: flash a board, pair a device with a home, enrol the hub, walk-test the home.

One command, `safebox-install` (cli.py), with a table of subcommands like mpremote's.
Every message an installer sees is in messages.py, in Chinese and English.
"""
