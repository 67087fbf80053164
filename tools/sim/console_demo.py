"""`safebox-sim demo --console`: the simulated home with the call-centre screen, for a person to look at.

Starts the home (the real pendant and toilet-door firmware on the `micropython` binary, the
hub and the receiver as their own processes) with the operators' listener, makes a one-time
operator login (a random password, gone with the demo's files), prints the address, the
login and how to trust the throwaway certificate, then plays a little: the resident goes
into the toilet, and presses the emergency button. It keeps running until Ctrl-C (or
`--for SECONDS`); take the alarm up on the screen and the pendant says "help is coming".
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from safebox.tools.browser import spki_pin
from safebox.tools.sim.home import SimHome

OPERATOR = "demo"


async def run(*, workdir: Path | None = None, seconds: float | None = None,
              say: Callable[[str], None] = print) -> None:
    with tempfile.TemporaryDirectory(prefix="safebox-demo-console-") as tmp:
        home = SimHome(workdir or Path(tmp), console=True)
        home.hub_settings = {"relay": {"operator_poll_s": 1}}  # operator acks reach the pendant within a second
        async with home:
            password = secrets.token_urlsafe(12)
            await home.add_operator(OPERATOR, password)
            pendant = await home.add_device("pendant", "bedroom", settings={"heartbeat_s": 5})
            toilet = await home.add_device("toilet_door", "toilet")
            chain = home.workdir / "tls" / "server-chain.pem"
            say(f"call-centre screen: {home.console_url}/   (add ?lang=zh-CN for Chinese)")
            say(f"one-time operator login: {OPERATOR} / {password}")
            say(f"its certificate is from a throwaway CA: {home.workdir / 'tls' / 'ca.pem'}; or start chromium with "
                f"--ignore-certificate-errors-spki-list={spki_pin(chain)}")
            toilet.set_door(True)
            await asyncio.sleep(0.6)
            toilet.set_door(False)
            say("the resident went into the toilet (the toilet board shows since when)")
            await asyncio.sleep(1.0)
            await home.press(pendant, "emergency")
            say("the emergency button was pressed: take it up on the screen; the pendant then shows "
                "\"help is coming\"")
            mark = len(pendant.firmware.lines)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)

            async def watch() -> None:
                line = await pendant.firmware.wait_for_line(r"^ack \d+ kind 3 shown$", timeout=10 ** 6, start=mark)
                say(f"pendant: {line} (help is coming)")

            watcher = asyncio.create_task(watch())
            say("running until Ctrl-C" if seconds is None else f"running for {seconds:.0f} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await stop.wait()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await watcher
