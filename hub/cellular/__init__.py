"""The hub's second path for urgent events: SMS through a cellular modem (protocol/SPEC.md 5).

`at` the AT command line, `modem` setup, supervision and sending, `record` what was sent,
`config` the [cellular] table, `path` the policy and the loop (`CellularPath`), the one
object the hub makes and runs.
"""

from .config import CellularConfig, parse
from .path import CellularPath

__all__ = ["CellularConfig", "CellularPath", "parse"]
