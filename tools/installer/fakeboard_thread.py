"""A fake board (fakeboard.py) on its own event loop in a thread, for code that talks to it
synchronously: the installer's commands, and the tests that drive them as a person would.

    with FakeBoardThread(tmp_path / "flash") as board:
        installer_function(board.url)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from safebox.tools.installer.fakeboard import FakeBoard


class FakeBoardThread:
    """A FakeBoard on its own event loop in a thread; `call` runs a coroutine there."""

    def __init__(self, flash_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fakeboard", daemon=True)
        self.board = FakeBoard(flash_dir, **kwargs)

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def __enter__(self) -> FakeBoardThread:
        self._thread.start()
        self.call(self.board.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call(self.board.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return self.board.url

    @property
    def flash_dir(self) -> Path:
        return self.board.flash_dir

    def unplug_after(self, nbytes: int | None) -> None:
        async def arm() -> None:
            self.board.unplug_after(nbytes)
        self.call(arm())

    def unplug(self) -> None:
        self.call(self.board.unplug())

    def unplug_at_exec(self, n: int | None) -> None:
        async def arm() -> None:
            self.board.unplug_at_exec(n)
        self.call(arm())
