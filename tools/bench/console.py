"""The call-centre screen under a district's load: stored at the platform -> visible on an open screen.

The receiver runs as its own process (`safebox-receiver serve --operator-port`: the hubs'
listener and the screen in one process, as deployed), its file holding HOMES enrolled hubs.
One headless Chromium (Debian's, through Selenium) is logged in on the screen. Meanwhile a
load generator plays the homes' hubs over TLS, every request signed with its hub's key:

* steady state: each home's `hub_heartbeat` every 300 s and its door sensor's events at the
  rate of a household, compressed: the steady phase runs STEADY_S at the district's real rate;
* the burst after a 30-minute outage: every hub at once sends one signed batch holding its
  newest heartbeat and the door events of those 30 minutes (about 6), CONCURRENCY at a time.

Throughout, probe emergencies (one per PROBE_EVERY_S, from homes taken in turn) are posted
alone, as a hub sends an urgent event. For each probe: the platform's own time of storing it
(`data-stored` on its row, ms) and the browser's time of first showing the row (the page's
script, `Date.now()` when the pushed panels are put in), on the same machine's clock. The
hubs' side: every request's answer time and status against the hub's 5 s timeout.

The platform's overload guard (tools/receiver/overload.py) may answer a batch 503 with
Retry-After; the load generator then sends it again after that wait, as a hub does, and the
count is printed (`busy_503`).

    python -m safebox.tools.bench.console [--quick] [--homes N] [--concurrency N] [--json]
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.protocol import events, signing
from safebox.tools import tlsca
from safebox.tools.bench import Table, bench_parser, machine_line, percentile

HEARTBEAT_S = 300
DOOR_EVENTS_PER_HOME_DAY = 24  # the front door and the toilet door, opened and closed
HUB_TIMEOUT_S = 5.0            # the hub's platform.timeout_s in the simulated home
STEADY_S = 20.0
PROBE_EVERY_S = 0.5
CONCURRENCY = 100
OUTAGE_S = 30 * 60
PASSWORD = "bench operator password"


class _Homes:
    """HOMES hubs with their keys, and the signed requests each sends."""

    def __init__(self, n: int) -> None:
        self.ids = [f"hub-bench-{i:05d}" for i in range(n)]
        self.keys = [Ed25519PrivateKey.generate() for _ in range(n)]
        self.counters = [0] * n
        self.seq = [0] * n

    def enrol(self, db: Path) -> None:
        from safebox.tools.receiver.console.accounts import Accounts
        from safebox.tools.receiver.store import Store
        store = Store(db)
        with store._transaction() as conn:  # one transaction, not 10,000 enrolments one by one
            conn.executemany("INSERT INTO hubs (hub_id, public_key, added_at) VALUES (?, ?, ?)",
                             [(h, signing.public_key_to_text(k.public_key()), events.timestamp(time.time()))
                              for h, k in zip(self.ids, self.keys)])
        Accounts(store).add("bench", PASSWORD, now=time.time())
        store.close()

    def _device(self, i: int) -> str:
        return f"{0x240ac4000000 + 2 * i + 1:012x}"

    def body(self, i: int, type_: str, at: float) -> dict[str, Any]:
        hub = self.ids[i]
        if type_ == events.HUB_HEARTBEAT:
            self.seq[i] += 1
            return events.make(event_id=f"{hub}-{self.seq[i]}", type=type_, hub_id=hub, home_id=f"home-{hub[10:]}",
                               occurred_at=at, data={"interval_s": HEARTBEAT_S, "uptime_s": 86400, "version": "bench",
                                                     "outbox_depth": 0, "devices_paired": 3, "radio": "scanning",
                                                     "clock_synchronized": True})
        self.counters[i] += 1
        role, room = ("pendant", "bedroom") if type_ == events.EMERGENCY else ("front_door", "hall")
        dev = self._device(i) if role == "pendant" else f"{0x240ac4000000 + 2 * i + 2:012x}"
        return events.make(event_id=f"{dev}-{self.counters[i]}", type=type_, hub_id=hub, home_id=f"home-{hub[10:]}",
                           occurred_at=at, device={"id": dev, "role": role, "room": room}, counter=self.counters[i],
                           data={"battery": 80, "rssi": -60})

    def one(self, base: str, i: int, type_: str) -> tuple[str, bytes, dict[str, str]]:
        body = self.body(i, type_, time.time())
        raw = events.encode(body)
        url = base + "/v1/events"
        return url, raw, signing.signed_headers(self.keys[i], self.ids[i], url, raw, body["event_id"])

    def batch(self, base: str, i: int, bodies: list[dict[str, Any]]) -> tuple[str, bytes, dict[str, str]]:
        from safebox.hub.uplink import batch_key
        raw = b"[" + b",".join(events.encode(b) for b in bodies) + b"]"
        url = base + "/v1/events:batch"
        return url, raw, signing.signed_headers(self.keys[i], self.ids[i], url, raw,
                                                batch_key([b["event_id"] for b in bodies]))


class _Hubs:
    """Sends the hubs' requests and keeps what each answer took."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.ms: list[float] = []
        self.failed: list[str] = []
        self.busy = 0  # answered 503 + Retry-After (the platform's overload guard): sent again later

    async def send(self, request: tuple[str, bytes, dict[str, str]]) -> float | None:
        """The Retry-After of a busy answer, else None."""
        url, raw, headers = request
        started = time.perf_counter()
        try:
            async with asyncio.timeout(HUB_TIMEOUT_S * 4):
                async with self.session.post(url, data=raw, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failed.append(type(exc).__name__)
            return None
        self.ms.append((time.perf_counter() - started) * 1000)
        if status == 503 and "Retry-After" in resp.headers:
            self.busy += 1
            return float(resp.headers["Retry-After"])
        if status not in (200, 201):
            self.failed.append(str(status))
        return None


async def _start_receiver(work: Path, tls: tlsca.TlsFiles, screen: bool,
                          concurrency: int) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    # Every simulated hub connects from this one address, where real hubs each have their own:
    # the receiver's per-address cap (guard.py) is raised to the load's concurrency.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safebox.tools.receiver.cli", "serve", "--db", str(work / "events.db"),
        "--max-per-peer", str(concurrency + 64),
        "--port", "0", *(("--operator-port", "0") if screen else ()), "--cert", str(tls.server_cert_chain),
        "--key", str(tls.server_key), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    async with asyncio.timeout(30):
        while "listening on" not in urls:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the receiver ended before it listened")
            if m := re.match(r"(operators on|listening on) (https://\S+)", line):
                urls[m.group(1)] = m.group(2)
    return proc, urls


async def _load(homes: _Homes, hub_url: str, session: aiohttp.ClientSession, steady_s: float,
                concurrency: int) -> dict[str, Any]:
    """Steady state, then the burst, with probe emergencies throughout; what the hubs saw."""
    n_homes = len(homes.ids)
    rng = random.Random(1)
    hubs = _Hubs(session)
    probes: list[int] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            i = len(probes) * 7919 % n_homes
            probes.append(i)
            await hubs.send(homes.one(hub_url, i, events.EMERGENCY))
            await asyncio.sleep(PROBE_EVERY_S)

    probing = asyncio.create_task(probe())
    # steady state at the district's real rate
    per_s = n_homes / HEARTBEAT_S + n_homes * DOOR_EVENTS_PER_HOME_DAY / 86400
    steady: set[asyncio.Task[None]] = set()
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < steady_s:
        for _ in range(int(per_s * elapsed) - sent):
            sent += 1
            i = rng.randrange(n_homes)
            type_ = events.HUB_HEARTBEAT if rng.random() < n_homes / HEARTBEAT_S / per_s else events.DOOR_OPENED
            task = asyncio.create_task(hubs.send(homes.one(hub_url, i, type_)))
            steady.add(task)
            task.add_done_callback(steady.discard)
        await asyncio.sleep(0.05)
    await asyncio.gather(*steady)
    # the burst: every hub back after 30 minutes, at once
    back = time.time()
    burst = [(i, [homes.body(i, events.HUB_HEARTBEAT, back)]
              + [homes.body(i, t, back - OUTAGE_S + 300 * k)
                 for k, t in enumerate([events.DOOR_OPENED, events.DOOR_CLOSED] * 3)])
             for i in range(n_homes)]
    gate = asyncio.Semaphore(concurrency)

    async def bounded(i: int, bodies: list[dict[str, Any]]) -> None:
        while True:
            async with gate:  # signed as it is sent, as a hub does (a signature lives 60 s)
                wait = await hubs.send(homes.batch(hub_url, i, bodies))
            if wait is None:
                return
            await asyncio.sleep(wait)  # told to come back later, as a hub does
    burst_started = time.monotonic()
    await asyncio.gather(*(bounded(i, bodies) for i, bodies in burst))
    burst_s = time.monotonic() - burst_started
    await asyncio.sleep(2.0)
    stop.set()
    await probing
    return {"count": len(hubs.ms) + len(hubs.failed), "steady": sent, "probes": len(probes),
            "burst_batches": n_homes, "burst_s": round(burst_s, 1),
            "p50_ms": round(percentile(hubs.ms, 50), 1), "p99_ms": round(percentile(hubs.ms, 99), 1),
            "max_ms": round(max(hubs.ms), 1), "failed": len(hubs.failed),
            "failures": dict(collections.Counter(hubs.failed)), "busy_503": hubs.busy,
            "over_timeout": sum(ms > HUB_TIMEOUT_S * 1000 for ms in hubs.ms) + len(hubs.failed)}


async def _run_one(n_homes: int, steady_s: float, screen: bool, shot_name: str,
                   concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """One receiver, its file holding `n_homes` hubs; with `screen`, a browser logged in on it."""
    from safebox.tools.browser import Browser, version
    homes = _Homes(n_homes)
    with tempfile.TemporaryDirectory(prefix="safebox-bench-console-") as tmp:
        work = Path(tmp)
        tls = tlsca.make_ca(work / "tls")
        homes.enrol(work / "events.db")
        proc, urls = await _start_receiver(work, tls, screen, concurrency)
        client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
        try:
            async with contextlib.AsyncExitStack() as stack:
                session = await stack.enter_async_context(aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=client_tls, limit=concurrency)))
                if not screen:
                    return {"hub_requests": await _load(homes, urls["listening on"], session, steady_s, concurrency)}
                b = await stack.enter_async_context(Browser(tls.server_cert_chain))
                await b.get(urls["operators on"] + "/login")
                await b.fill("#name", "bench")
                await b.fill("#password", PASSWORD)
                await b.click("#login")
                await b.wait_text("#live-status", "live", timeout=30)
                hubs = await _load(homes, urls["listening on"], session, steady_s, concurrency)
                await b.wait_for(lambda: len(b.driver.execute_script("return window.sbxSeen")) >= hubs["probes"],
                                 timeout=30, what="every probe on the screen")
                seen = await b.script("return window.sbxSeen")
                shot = await b.screenshot(shot_name)
                browser = version()
        finally:
            proc.terminate()
            await proc.wait()
    latencies = [v["seen"] - v["stored"] for v in seen.values()]
    return {"browser": browser, "probes": len(latencies), "screenshot": str(shot),
            "stored_to_screen_ms": {"p50": round(percentile(latencies, 50), 1),
                                    "p99": round(percentile(latencies, 99), 1),
                                    "max": round(max(latencies), 1)},
            "hub_requests": hubs}


async def _measure(n_homes: int, steady_s: float, quick: bool, concurrency: int) -> dict[str, Any]:
    with_screen = await _run_one(n_homes, steady_s, True, "bench-console-quick" if quick else "bench-console",
                                 concurrency)
    baseline = await _run_one(n_homes, steady_s, False, "", concurrency)
    return {"homes": n_homes, "steady_s": steady_s, "concurrency": concurrency, **with_screen,
            "baseline_without_screen": baseline}


def run(quick: bool = False, homes: int | None = None) -> list[Table]:
    return [table(measure(quick, homes))]


def measure(quick: bool = False, homes: int | None = None, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    return asyncio.run(_measure(homes or (500 if quick else 10_000), 5.0 if quick else STEADY_S, quick, concurrency))


def table(r: dict[str, Any]) -> Table:
    s, h, b = r["stored_to_screen_ms"], r["hub_requests"], r["baseline_without_screen"]["hub_requests"]
    rows = [["stored at the platform -> visible on the open screen", r["probes"], s["p50"], s["p99"], s["max"]],
            ["hubs' requests answered (steady + burst)", h["count"], h["p50_ms"], h["p99_ms"], h["max_ms"]],
            ["baseline: the same load, no screen", b["count"], b["p50_ms"], b["p99_ms"], b["max_ms"]]]
    notes = [f"{r['homes']:,} homes (enrolled hubs); steady state {r['steady_s']:.0f} s at the district's rate "
             f"({h['steady']} requests: heartbeats every {HEARTBEAT_S} s, {DOOR_EVENTS_PER_HOME_DAY} door events a "
             f"home a day), then every hub's batch after a 30-minute outage ({h['burst_batches']:,} batches of 7 "
             f"events in {h['burst_s']} s, {r['concurrency']} at a time); probe emergencies every {PROBE_EVERY_S} s.",
             f"hubs' requests failed: {h['failed']} (baseline {b['failed']}); answered busy (503, sent again after "
             f"its Retry-After): {h['busy_503']} (baseline {b['busy_503']}); over the hub's {HUB_TIMEOUT_S:.0f} s "
             f"timeout (or failed): {h['over_timeout']} (baseline {b['over_timeout']}); burst drained in "
             f"{h['burst_s']} s (baseline {b['burst_s']} s).",
             f"browser: {r['browser']} (headless, Selenium); screenshot: {r['screenshot']}",
             f"machine: {machine_line()} (receiver, load generator and browser on the same machine)"]
    return Table("Call-centre screen under a district's load (ms)", ["path", "n", "p50", "p99", "max"], rows, notes)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("console", __doc__, quick_help="500 homes, 5 s steady state")
    parser.add_argument("--homes", type=int, help="how many homes (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"hubs sending their batch at once in the burst (default {CONCURRENCY})")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.homes, args.concurrency)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(result).text())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
