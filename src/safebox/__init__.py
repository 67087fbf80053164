"""The home safety box: firmware, hub, protocol and tools, under one import name.

The design card's folders stay at the top of the repository (hub/, protocol/, firmware/,
tools/); `src/safebox/` holds links to them, so every module has exactly one import name
(`safebox.hub.store`, never `hub.store`), an editable install is a plain path on sys.path
that editors and type checkers follow, and a wheel holds real files.
"""

__version__ = "0.2.0"  # the firmware's too (firmware/main.py VERSION; tests/test_firmware_package.py)
