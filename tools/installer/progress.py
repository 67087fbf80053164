"""Progress of a long copy, for a person watching a terminal or reading a log afterwards."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """A one-line bar on a terminal; a line at each quarter otherwise (logs, pipes)."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._quarter = -1

    def __call__(self, done: int, total: int) -> None:
        frac = 1.0 if total == 0 else min(1.0, done / total)
        text = f"{self.label} [{'#' * int(frac * 30):<30}] {frac * 100:3.0f}%  {done / 1024:.1f}/{total / 1024:.1f} KB"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
        elif int(frac * 4) > self._quarter:
            self._quarter = int(frac * 4)
            print(text, file=self.stream, flush=True)
