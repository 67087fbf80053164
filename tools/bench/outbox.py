"""Outbox write rate: `HubStore.accept` against naive durable baselines, on the same disk.

Every variant makes each event durable before it returns (what "stored before
acknowledged" needs), one event at a time, as frames arrive:

* safebox `HubStore.accept`: SQLite in WAL mode, synchronous=FULL, one IMMEDIATE
  transaction per event holding the replay-guard check, the counter update, the outbox
  insert and the device's last-heard row (the hub's real path, body validated too);
* baseline A, naive SQLite: the library's defaults (rollback journal, journal_mode=DELETE),
  synchronous=FULL, one autocommit INSERT of the body per event into one table;
* baseline B, a log file: append the body as a JSON line and fsync, per event.

The ratio is events/s over baseline A's events/s. Temporary files are made in the folder
given with --dir (default: the system's temp folder); its file system is named in the notes,
because fsync costs what the disk says.

    python -m safebox.tools.bench.outbox [--quick] [--dir DIR]
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from safebox.hub.store import HubStore
from safebox.protocol import events
from safebox.tools.bench import Table, bench_parser, machine_line, print_tables

DEVICES = 16


def make_events(count: int) -> list[tuple[str, int, bytes]]:
    """(device id, counter, body) of pendant events across 16 devices."""
    out = []
    for n in range(count):
        dev = f"240ac4{n % DEVICES:06x}"
        counter = 1 + n // DEVICES
        body = events.make(event_id=f"{dev}-{counter}", type=events.EMERGENCY, hub_id="hub-bench-0001",
                           home_id="home-bench-0001", occurred_at=1_790_000_000 + n,
                           device={"id": dev, "role": "pendant", "room": "bedroom"}, counter=counter,
                           data={"battery": 87, "action": "press", "rssi": -61})
        out.append((dev, counter, events.encode(body)))
    return out


def _filesystem(path: Path) -> str:
    """The file system type and mount point holding `path` (from /proc/mounts), or '?'."""
    try:
        mounts = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    real = str(path.resolve())
    best = max((m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    return f"{best[2]} on {best[0]} ({best[1]})" if best else "?"


def _timed(setup: Callable[[Path], tuple[Callable[[str, int, bytes], None], Callable[[], None]]],
           evs: list[tuple[str, int, bytes]], base: Path, repeats: int) -> float:
    best = 0.0
    for r in range(repeats):
        workdir = Path(tempfile.mkdtemp(prefix=f"outbox-{r}-", dir=base))
        write, close = setup(workdir)
        try:
            started = time.perf_counter()
            for dev, counter, body in evs:
                write(dev, counter, body)
            best = max(best, len(evs) / (time.perf_counter() - started))
        finally:
            close()
    return best


def _safebox(workdir: Path) -> tuple[Callable[[str, int, bytes], None], Callable[[], None]]:
    store = HubStore.open(workdir / "hub.db")

    def write(dev: str, counter: int, body: bytes) -> None:
        verdict = store.accept(dev, counter, body, heard_at=time.time(), battery=87, rssi=-61)
        assert verdict.kind == "new"

    return write, store.close


def _naive_sqlite(workdir: Path) -> tuple[Callable[[str, int, bytes], None], Callable[[], None]]:
    db = sqlite3.connect(workdir / "naive.db", isolation_level=None)  # autocommit: one transaction per INSERT
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE outbox (event_id TEXT PRIMARY KEY, body BLOB NOT NULL)")

    def write(dev: str, counter: int, body: bytes) -> None:
        db.execute("INSERT INTO outbox (event_id, body) VALUES (?, ?)", (f"{dev}-{counter}", body))

    return write, db.close


def _log_file(workdir: Path) -> tuple[Callable[[str, int, bytes], None], Callable[[], None]]:
    f = open(workdir / "outbox.jsonl", "ab")  # noqa: SIM115 - closed by the returned close()

    def write(dev: str, counter: int, body: bytes) -> None:
        f.write(body + b"\n")
        f.flush()
        os.fsync(f.fileno())

    return write, f.close


def run(quick: bool = False, directory: str | Path | None = None) -> list[Table]:
    count = 40 if quick else 600
    repeats = 1 if quick else 3
    evs = make_events(count)
    with tempfile.TemporaryDirectory(prefix="safebox-bench-outbox-", dir=directory) as tmp:
        base = Path(tmp)
        fs = _filesystem(base)
        ours = _timed(_safebox, evs, base, repeats)
        naive = _timed(_naive_sqlite, evs, base, repeats)
        log = _timed(_log_file, evs, base, repeats)
    rows = [
        ["safebox HubStore.accept (WAL, synchronous=FULL, guard + outbox + seen, 1 tx/event)",
         f"{ours:,.0f}", f"{1000 / ours:.2f}", f"{ours / naive:.2f}x"],
        ["baseline A: naive SQLite (rollback journal, synchronous=FULL, 1 INSERT/event)",
         f"{naive:,.0f}", f"{1000 / naive:.2f}", "1.00x"],
        ["baseline B: append JSON line + fsync per event",
         f"{log:,.0f}", f"{1000 / log:.2f}", f"{log / naive:.2f}x"],
    ]
    notes = [f"{count:,} events (~{len(evs[0][2])} B bodies) from {DEVICES} devices, written one at a time, each "
             f"durable before the next; best of {repeats}.",
             "ratio = events/s over baseline A's events/s (higher is faster).",
             f"disk: {fs}",
             f"machine: {machine_line()}"]
    return [Table("Outbox write rate (durable, one event per transaction)",
                  ["store", "events/s", "ms/event", "ratio"], rows, notes)]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("outbox", __doc__)
    parser.add_argument("--dir", help="where the temporary databases go (default: the temp folder)")
    args = parser.parse_args(argv)
    print_tables(run(args.quick, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
