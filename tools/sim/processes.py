"""Child processes of the simulated home (receiver, hub): started, watched, stopped or killed for real."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys


class ProcessFailed(RuntimeError):
    """A child process ended, or did not say it was ready, when it should have; the message has its last lines."""


class ChildProcess:
    """`python -m <module> <args>` with its output lines collected (and logged under `name`)."""

    def __init__(self, name: str, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.lines: list[str] = []
        self.log = logging.getLogger(f"safebox.sim.{name}")
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._new_line = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self, ready: str, timeout: float = 20.0) -> re.Match[str]:
        """Start it and wait for an output line matching the regex `ready`."""
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [asyncio.create_task(self._read(s)) for s in (self._proc.stdout, self._proc.stderr)]
        return await self.wait_for_line(ready, timeout=timeout, start=len(self.lines))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            self.log.debug("%s", text)
            self._new_line.set()
        self._new_line.set()

    async def wait_for_line(self, pattern: str, *, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """The first line from index `start` on that matches `pattern`."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[start:]:
                    if m := regex.search(line):
                        return m
                if not self.running and all(r.done() for r in self._readers):
                    raise ProcessFailed(self._failure(f"ended (status {self._proc.returncode}) before {pattern!r}"))
                self._new_line.clear()
                await self._new_line.wait()

    def _failure(self, what: str) -> str:
        tail = "\n  ".join(self.lines[-15:])
        return f"{self.name} {what}; last lines:\n  {tail}"

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended in `timeout`; safe when not running."""
        if self.running:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except TimeoutError:
                self._proc.kill()
        return await self._reap()

    async def kill(self) -> int | None:
        """SIGKILL: no clean-up of any kind, as in a power cut."""
        if self.running:
            self._proc.kill()
        return await self._reap()

    async def _reap(self) -> int | None:
        if self._proc is None:
            return None
        code = await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code
