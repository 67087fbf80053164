"""One power-on of a board in this process (see device.py): `Boot` owns the boot's loop work
and ends it all at once; `BoardTask` runs each step of a board's tasks in a greenlet so that a
blocking sleep parks only that board; `Reset` ends a boot's code.
"""

from __future__ import annotations

import asyncio
import traceback
from asyncio import tasks as _tasks
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import greenlet

if TYPE_CHECKING:
    from safebox.tools.sim.cpython_port.device import PortDevice


class Reset(BaseException):
    """This boot is over (reset, deep sleep, watchdog, power off): stop running its code."""


@dataclass(frozen=True)
class Output:
    t: float  # loop time
    pin: int
    value: int
    kind: str = "pin"


class BoardTask(_tasks._PyTask):  # type: ignore[name-defined,misc]
    """A task of one board: each step runs in its own greenlet, so the board can sleep mid-step."""

    def __init__(self, coro: Coroutine[Any, Any, Any], *, loop: asyncio.AbstractEventLoop, boot: Boot,
                 **kwargs: Any) -> None:
        self._boot = boot  # before the first step is scheduled
        super().__init__(coro, loop=loop, **kwargs)

    def _Task__step(self, exc: BaseException | None = None) -> None:  # asyncio's Task.__step
        boot = self._boot
        if boot.sleeping:
            boot.deferred.append((self._Task__step, (exc,)))
            return
        step = greenlet.greenlet(super()._Task__step)
        step.board_task = self  # type: ignore[attr-defined]
        step.switch(exc)


def board_task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    """The loop's task factory: a task made by a board's task belongs to that board."""
    current = asyncio.current_task(loop)
    boot = getattr(current, "_boot", None)
    if isinstance(current, BoardTask) and boot is not None and boot.alive:
        return boot.spawn(coro, **kwargs)
    return asyncio.Task(coro, loop=loop, **kwargs)


class Boot:
    """One power-on of a board: the loop work it owns, ended all at once by `end()`."""

    def __init__(self, device: PortDevice, reset_cause: int, wake_reason: int) -> None:
        self.device = device
        self.reset_cause = reset_cause
        self.wake_reason = wake_reason
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.skew_s = 0.0  # blocking sleeps move this board's clock ahead of the loop's
        self.alive = True
        self.tasks: set[asyncio.Task[Any]] = set()
        self.handles: set[asyncio.Handle] = set()
        self.closers: list[Callable[[], None]] = []
        self.main: asyncio.Task[Any] | None = None
        self.wdt: asyncio.TimerHandle | None = None
        self.wdt_timeout_s = 0.0
        self.wdt_feeds = 0
        self.sleeping = False
        self._wake_on_pin = False
        self.deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._sleeper: tuple[greenlet.greenlet, asyncio.TimerHandle | None] | None = None
        self.main_py: greenlet.greenlet | None = None  # main.py, running or parked in asyncio.run
        self._console = ""

    # -- time --------------------------------------------------------------------------
    def uptime_s(self) -> float:
        return self.loop.time() - self.started_at + self.skew_s

    # -- work owned by this boot --------------------------------------------------------
    def check_alive(self) -> None:
        if not self.alive:
            raise Reset("this boot has ended")

    def spawn(self, coro: Coroutine[Any, Any, Any], **kwargs: Any) -> asyncio.Task[Any]:
        if not self.alive:
            coro.close()
            raise Reset("this boot has ended")
        task = BoardTask(coro, loop=self.loop, boot=self, **kwargs)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved, so asyncio does not complain of it later
        if not self.alive or task is self.main:  # main()'s end goes back to main.py
            return
        if exc is not None and not isinstance(exc, Reset):
            self.print_exception(exc, "Task exception wasn't retrieved")

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` from the loop soon, as micropython.schedule runs a soft IRQ handler."""
        self.call_later(0, fn, *args)

    def call_later(self, delay_s: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle | None:
        if not self.alive:
            return None
        handle: asyncio.TimerHandle

        def run() -> None:
            self.handles.discard(handle)
            if not self.alive:
                return
            if self.sleeping:
                self.deferred.append((run, ()))
                return
            try:
                fn(*args)
            except Reset:
                pass
            except Exception as exc:
                self.print_exception(exc, "Unhandled exception in IRQ callback handler")

        handle = self.loop.call_later(delay_s, run)
        self.handles.add(handle)
        return handle

    def feed_watchdog(self) -> None:
        if self.wdt is not None:
            self.wdt.cancel()
            self.handles.discard(self.wdt)
        self.wdt_feeds += 1
        if self.wdt_timeout_s:
            self.wdt = self.call_later(self.wdt_timeout_s, self.device._watchdog_expired, self, self.wdt_feeds)

    # -- main.py -------------------------------------------------------------------------
    def start_main(self, run_main_py: Callable[[], None]) -> None:
        """Run main.py until it ends or parks (asyncio.run, a blocking sleep)."""
        self.main_py = greenlet.greenlet(run_main_py)
        self.main_py.switch()

    def run_main_task(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """The port's asyncio.run(): main() as the board's main task; main.py waits for it."""
        current = greenlet.getcurrent()
        if current is not self.main_py or current.parent is None:
            coro.close()
            raise RuntimeError("asyncio.run() is for main.py, not from inside a task")
        task = self.spawn(coro)
        self.main = task
        task.add_done_callback(lambda _t: self.loop.call_soon(self._resume_main))
        current.parent.switch()  # parked until main() ends (or the board does)
        self.check_alive()
        if task.cancelled():
            raise asyncio.CancelledError()
        exc = task.exception()
        if exc is not None:
            raise exc
        return task.result()

    def _resume_main(self) -> None:
        main_py = self.main_py
        if main_py is None or main_py.dead or self._sleeper is not None and self._sleeper[0] is main_py:
            return
        if self.alive:
            main_py.switch()
        elif main_py:  # started and parked: unwind it now, not whenever it is collected
            main_py.throw(Reset("the board is off"))

    # -- sleep ---------------------------------------------------------------------------
    def pause(self, seconds: float | None, *, wake_pins: bool) -> None:
        """The whole board stops for `seconds` of loop time (None: until a wake pin), or
        until an armed wake pin reaches its level (with wake_pins). Called from firmware
        code; outside a board task's step (main.py, an IRQ handler) only the board's
        clock moves on."""
        self.check_alive()
        if wake_pins and self.device.wake_pin_active():
            return
        current = greenlet.getcurrent()
        task = getattr(current, "board_task", None)
        in_step = task is not None and task._boot is self
        if not (in_step or current is self.main_py) or current.parent is None:
            self.skew_s += seconds or 0.0
            return
        self.sleeping = True
        self._wake_on_pin = wake_pins
        handle = None if seconds is None else self.loop.call_later(max(0.0, seconds), self._wake)
        self._sleeper = (current, handle)
        if in_step:
            _tasks._leave_task(self.loop, task)
        try:
            current.parent.switch()  # the loop goes on; _wake() switches back here
        finally:
            if in_step:
                _tasks._enter_task(self.loop, task)
        self.check_alive()

    def pin_changed(self) -> None:
        if self.sleeping and self._wake_on_pin and self.device.wake_pin_active():
            self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        sleeper, self._sleeper = self._sleeper, None
        if sleeper is None:
            return
        step, handle = sleeper
        if handle is not None:
            handle.cancel()
        self.sleeping = False
        if self.alive:
            step.switch()
        else:
            step.throw(Reset("power off while asleep"))
        deferred, self.deferred = self.deferred, []
        for fn, args in deferred:
            self.loop.call_soon(fn, *args)

    def end(self) -> None:
        """Power gone: nothing of this boot runs again."""
        if not self.alive:
            return
        self.alive = False
        if self._sleeper is not None:  # unwind the parked step from a clean loop callback
            self.loop.call_soon(self._wake)
        self.loop.call_soon(self._resume_main)
        for handle in list(self.handles):
            handle.cancel()
        self.handles.clear()
        for task in list(self.tasks):
            task.cancel()
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # the radio going away must not stop the power going off
                self.device.log.exception("closing the boot")

    # -- console -----------------------------------------------------------------------
    def console(self, text: str) -> None:
        if not self.alive:
            return
        self._console += text
        *lines, self._console = self._console.split("\n")
        for line in lines:
            self.device._line(line)

    def print_exception(self, exc: BaseException, heading: str) -> None:
        self.console(heading + "\n" + "".join(traceback.format_exception(exc)))
