"""Retention at the platform (tools/receiver/retention.py, docs/PRIVACY.md): routine events are
deleted after N days, alarms are kept; by `serve` hourly and by `purge` once. Real SQLite files,
the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from safebox.protocol import events
from safebox.tools.receiver import retention
from safebox.tools.receiver.store import Store

HUB = "hub-7f3a9c"
DAY = 86400.0
NOW = time.time()
# (type, days ago it was received)
STORED = [("door_opened", 40), ("toilet_occupied", 40), ("hub_heartbeat", 31), ("device_online", 45),
          ("emergency", 400), ("toilet_overdue", 60), ("device_offline", 90), ("battery_low", 35),
          ("door_closed", 29), ("hub_heartbeat", 1)]


def fill(path: Path) -> None:
    store = Store(path, create=True)
    try:
        for n, (type_, days) in enumerate(STORED, start=1):
            device = None if type_.startswith("hub_") or type_ == "toilet_overdue" else \
                {"id": "240ac4000001", "role": "pendant", "room": "hall"}
            event_id = f"{HUB}-{n}" if device is None else f"240ac4000001-{n}"
            body = events.make(event_id=event_id, type=type_, hub_id=HUB, home_id="home-0001",
                               occurred_at=NOW - days * DAY, device=device, counter=n if device else None)
            store.record_event(HUB, events.encode(body), body, now=NOW - days * DAY)
    finally:
        store.close()


def kept(path: Path) -> list[tuple[str, int]]:
    store = Store(path, create=False)
    try:
        return [(e.type, round((NOW - _seconds(e.received_at)) / DAY)) for e in store.events()]
    finally:
        store.close()


def _seconds(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


EXPECTED_AFTER_30_DAYS = [("emergency", 400), ("toilet_overdue", 60), ("device_offline", 90), ("battery_low", 35),
                          ("door_closed", 29), ("hub_heartbeat", 1)]


def test_routine_events_older_than_the_limit_go_alarms_stay(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    fill(db)
    store = Store(db, create=False)
    try:
        assert retention.purge(store, 30, now=NOW) == 4
        assert retention.purge(store, 30, now=NOW) == 0  # nothing more to do
        assert retention.purge(store, 0, now=NOW) == 0  # 0 keeps everything
    finally:
        store.close()
    assert kept(db) == EXPECTED_AFTER_30_DAYS


def test_purge_works_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "events.db"
    fill(db)
    monkeypatch.setattr(retention, "CHUNK", 1)  # one row per transaction: the loop must go on to the end
    store = Store(db, create=False)
    try:
        assert retention.purge(store, 30, now=NOW) == 4
    finally:
        store.close()
    assert kept(db) == EXPECTED_AFTER_30_DAYS


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safebox.tools.receiver.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_purge_command(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    fill(db)
    done = _cli("purge", "--db", str(db), "--keep-routine-days", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deleted 4 routine events received more than 30 days ago; alarms kept"
    assert kept(db) == EXPECTED_AFTER_30_DAYS
    refused = _cli("purge", "--db", str(db), "--keep-routine-days", "0")
    assert refused.returncode != 0 and "must be more than 0" in refused.stderr


def test_serve_purges_when_it_starts(tmp_path: Path) -> None:
    from safebox.tools import tlsca

    db = tmp_path / "events.db"
    fill(db)
    tls = tlsca.make_ca(tmp_path / "tls")
    proc = subprocess.Popen([sys.executable, "-m", "safebox.tools.receiver.cli", "serve", "--db", str(db),
                             "--port", "0", "--cert", str(tls.server_cert_chain), "--key", str(tls.server_key),
                             "--keep-routine-days", "35"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        line = ""
        while "retention: deleted" not in line:
            assert time.time() < deadline, "serve did not say it purged"
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "serve ended"
        assert "deleted 3 routine events received more than 35 days ago" in line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert kept(db) == [("hub_heartbeat", 31), ("emergency", 400), ("toilet_overdue", 60),
                        ("device_offline", 90), ("battery_low", 35), ("door_closed", 29), ("hub_heartbeat", 1)]
