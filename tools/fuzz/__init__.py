"""Fuzzing: the targets shared by the hypothesis tests and the long atheris run (`python -m safebox.tools.fuzz`)."""
