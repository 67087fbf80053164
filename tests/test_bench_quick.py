"""The benchmark commands run (quick mode) and print their tables; the results page keeps its
sections apart. No timing is asserted: figures depend on the machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safebox.tools import bench
from safebox.tools.bench import Table, update_section

from .conftest import ROOT


def _check(tables: list[Table], columns_with: str) -> None:
    assert tables and all(isinstance(t, Table) for t in tables)
    for t in tables:
        assert t.rows and all(len(row) == len(t.columns) for row in t.rows)
        assert any(columns_with in c for c in t.columns)
        assert any("machine:" in note for note in t.notes)
        assert t.title in t.text() and t.title in t.markdown()


def test_codec_benchmark_quick():
    from safebox.tools.bench import codec
    tables = codec.run(quick=True)
    _check(tables, "frames/s")
    assert "bthome-ble" in tables[0].text()  # the baseline ran side by side


def test_outbox_benchmark_quick(tmp_path):
    from safebox.tools.bench import outbox
    _check(outbox.run(quick=True, directory=tmp_path), "events/s")


def test_cellular_benchmark_quick():
    from safebox.tools.bench import cellular
    (table,) = cellular.run(quick=True)
    _check([table], "to platform")
    no_modem, modem = table.rows
    assert float(modem[2]) < 90 < float(no_modem[2])  # the goal, and the outage it beats
    assert modem[6] == "sms+https" and modem[7] == 1 == no_modem[7]


def test_receiver_benchmark_quick():
    from safebox.tools.bench import receiver
    _check(receiver.run(quick=True), "req/s")


def test_e2e_benchmark_quick():
    from safebox.tools.bench import e2e
    tables = e2e.run(quick=True)
    _check(tables, "median")
    assert tables[0].rows[0][1] == 3  # presses


def test_the_bench_command_writes_its_section_and_keeps_the_others(tmp_path):
    page = tmp_path / "RESULTS.md"
    update_section(page, "chaos", "## Chaos run\n\nkept")
    out = subprocess.run([sys.executable, "-m", "safebox.tools.bench", "--quick", "--only", "codec,outbox,missing-ok",
                          "--write", str(page)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "unknown module" in out.stderr  # a typo is refused, not ignored
    out = subprocess.run([sys.executable, "-m", "safebox.tools.bench", "--quick", "--only", "codec,outbox",
                          "--write", str(page)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "machine:" in out.stdout and "frames/s" in out.stdout
    text = page.read_text()
    assert text.index("<!-- begin bench -->") < text.index("<!-- begin chaos -->")  # in page order
    assert "kept" in text and "python -m safebox.tools.bench.codec" in text
    update_section(page, "bench", "## Benchmarks\n\nreplaced")
    text = page.read_text()
    assert text.count("<!-- begin bench -->") == 1 and "replaced" in text and "frames/s" not in text


def test_a_missing_or_failing_module_does_not_stop_the_others(monkeypatch, capsys):
    from safebox.tools.bench import __main__ as runner
    monkeypatch.setattr(runner, "MODULES", [("no_such_module", "missing"), ("codec", "codec")])
    outcomes = [runner.run_module(name, about, True) for name, about in runner.MODULES]
    assert [o.status for o in outcomes] == ["missing", "ok"]
    broken = runner.run_module("__init__", "has no run()", True)  # the package itself: neither run nor main
    assert broken.status == "failed"


@pytest.mark.parametrize("value, text", [(1234.5, "1,234.5"), (0.123456, "0.123"), (12, "12"), ("x", "x")])
def test_cells_are_formatted_for_reading(value, text):
    assert bench._cell(value) == text


def test_console_benchmark_quick():
    # a real browser on the screen while 500 homes' hubs post: the figures printed, not judged
    from safebox.tools.bench import console
    result = console.measure(quick=True)
    assert result["homes"] == 500 and result["probes"] > 0
    assert set(result["stored_to_screen_ms"]) >= {"p50", "p99"} and "Chromium" in result["browser"]
    assert result["hub_requests"]["failed"] == 0 and result["baseline_without_screen"]["hub_requests"]["count"] > 0
    _check([console.table(result)], "p99")


def test_only_some_modules_written_keeps_the_others_figures():
    """`--only hub --write` once replaced every other module's figures with nothing."""
    from safebox.tools.bench import __main__ as runner

    previous = ("## Benchmarks\n\nGenerated earlier\n\n### codec: decode\n\nold codec table\n\n"
                "### hub: hub\n\nold hub table\n\n### firmware: fw\n\nold firmware table\n")
    now = "## Benchmarks\n\nGenerated now\n\n### hub: hub\n\nnew hub table\n"
    merged = runner.keep_others(previous, now)
    assert "Generated now" in merged and "new hub table" in merged and "old hub table" not in merged
    assert merged.index("old codec table") < merged.index("new hub table") < merged.index("old firmware table")
    assert "Run now: hub; the figures of codec, firmware are from their last run." in merged
    assert runner.keep_others("", now).count("### ") == 1


@pytest.mark.parametrize("burst, acked", [([2.9, 36.0, 69.1], "3 of 16"), ([], "0 of 16")])
def test_the_pi_tables_say_how_many_pendants_took_an_ack(burst, acked):
    """The virtual Pi's figures (tools/bench/pi.py, which needs the VM to measure): the burst
    table counts the pendants that took an ack, and one with none raises nothing."""
    from safebox.tools.bench import pi
    side = {"hub_stored_ms": [186.0], "platform_stored_ms": [191.0], "kind1_ms": [237.0], "kind2_ms": [237.0]}
    vm = {**side, "vm_loop_s": 2.5, "host_loop_s": 0.4, "rss_kib": 46_000, "burst_acked_s": burst,
          "radio": {"kernel": "6.1", "bluez": "5.66", "scanning": "passive", "init": "systemd"}}
    latency, acks, memory = pi.tables({"presses": 1, "bumble": side, "vm": vm})
    assert acks.rows[0][0] == acked and len(acks.rows[0]) == len(acks.columns)
    assert "44.9 MiB" in memory.text() and "first ack" in latency.text()
