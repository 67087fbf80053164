"""`python -m safebox.tools.fuzz`: the long fuzzing run (not part of the test suite).

    python -m safebox.tools.fuzz [TARGET ...] [--seconds 60] [--engine atheris|hypothesis]
                                 [--keep-going] [--write [RESULTS.md]]

Each target of tools/fuzz/targets.py (codec, ccm, events, config, verifier, receiver) runs in
its own process for --seconds. With atheris (the `fuzz` extra: pip install -e '.[fuzz]'),
coverage-guided over the instrumented safebox code plus the HTTP signature libraries; crash
inputs are written to the --artifacts folder. Without atheris, hypothesis feeds the same
targets random and shrunk bytes for the same time.

Known bugs (targets.KNOWN, already reported) are counted and skipped, so a run can find new
ones; --strict stops at them too. Exit status 1 when a target found anything new.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT_RUNS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


# -- the child: one target, one engine ---------------------------------------------------------

def _child(target: str, seconds: float, engine: str, strict: bool, stats_path: Path, corpus: Path,
           artifacts: Path) -> int:
    stats: dict[str, Any] = {"target": target, "engine": engine, "runs": 0, "known": {}, "new": None}

    def save() -> None:
        stats_path.write_text(json.dumps(stats))

    last_save = [time.monotonic()]

    def wrap(func: Any, known_bug: Any) -> Any:
        def one(data: bytes) -> None:
            stats["runs"] += 1
            try:
                func(data)
            except Exception as exc:
                known = known_bug(target, exc)
                if known is None or strict:
                    stats["new"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                    stats["input"] = data.hex()[:2000]
                    save()
                    raise
                stats["known"][known] = stats["known"].get(known, 0) + 1
            if time.monotonic() - last_save[0] > 1.0:
                last_save[0] = time.monotonic()
                save()
        return one

    if engine == "atheris":
        import atheris
        with atheris.instrument_imports(include=["safebox", "http_sf", "http_message_signatures"]):
            from safebox.tools.fuzz import targets
        one = wrap(targets.TARGETS[target], targets.known_bug)
        corpus.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        import atexit
        atexit.register(save)
        atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", "-print_final_stats=1",
                       f"-artifact_prefix={artifacts}/{target}-", "-rss_limit_mb=2048", "-max_len=4096",
                       str(corpus)], one)
        atheris.Fuzz()
        return 0
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from safebox.tools.fuzz import targets
    one = wrap(targets.TARGETS[target], targets.known_bug)

    @settings(max_examples=2000, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=1024))
    def batch(data: bytes) -> None:
        one(data)

    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            batch()
    finally:
        save()
    return 0


# -- the parent: every target, a table ------------------------------------------------------------

def _run_target(target: str, seconds: float, engine: str, strict: bool, workdir: Path) -> dict[str, Any]:
    stats_path = workdir / f"{target}.stats.json"
    cmd = [sys.executable, "-m", "safebox.tools.fuzz", "--child", target, "--seconds", str(seconds),
           "--engine", engine, "--stats", str(stats_path), "--corpus", str(workdir / "corpus" / target),
           "--artifacts", str(workdir / "artifacts")] + (["--strict"] if strict else [])
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 3 + 120)
    elapsed = time.monotonic() - started
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError):
        stats = {"target": target, "engine": engine, "runs": 0, "known": {}, "new": None}
    out = proc.stdout + proc.stderr
    if (m := _STAT_RUNS.search(out)) or (m := _DONE.search(out)):
        stats["runs"] = max(stats["runs"], int(m.group(1)))
    stats["seconds"] = round(elapsed, 1)
    stats["exit"] = proc.returncode
    if proc.returncode != 0 and not stats.get("new"):
        tail = "\n".join(out.strip().splitlines()[-15:])
        stats["new"] = f"exit status {proc.returncode}: {tail}"
    return stats


def table(results: list[dict[str, Any]], seconds: float) -> Any:
    from safebox.tools.bench import Table, machine_line
    rows = []
    for r in results:
        known = "; ".join(f"{k} ({n:,}x)" for k, n in r.get("known", {}).items()) or "-"
        rows.append([r["target"], r["engine"], f"{r['runs']:,}", f"{r.get('seconds', 0):.0f}",
                     (r["new"] or "none")[:160], known[:300]])
    notes = [f"{seconds:g} s per target, each in its own process.",
             "new = a finding not in tools/fuzz/targets.KNOWN (the run stops there); known = reported bugs hit "
             "and skipped, so the run could carry on.",
             f"machine: {machine_line()}"]
    return Table("Fuzzing: long run", ["target", "engine", "inputs", "s", "new finding", "known bugs hit"],
                 rows, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help="default: all")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target (default 60)")
    parser.add_argument("--engine", choices=["atheris", "hypothesis"],
                        help="default: atheris when installed, else hypothesis")
    parser.add_argument("--strict", action="store_true", help="stop at known bugs too")
    parser.add_argument("--workdir", type=Path, help="corpus and crash inputs (default: a temporary folder)")
    parser.add_argument("--write", nargs="?", const="", metavar="RESULTS.md",
                        help="update the fuzzing section of the results page")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    engine = args.engine or ("atheris" if atheris_available() else "hypothesis")
    if engine == "atheris" and not atheris_available():
        parser.error("atheris is not installed (pip install -e '.[fuzz]'); use --engine hypothesis")
    if args.child:
        return _child(args.child, args.seconds, engine, args.strict, args.stats, args.corpus, args.artifacts)

    from safebox.tools.fuzz.targets import TARGETS
    names = args.targets or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="safebox-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {', '.join(names)} with {engine}, {args.seconds:g} s each; work in {workdir}", file=sys.stderr)
    results = []
    for name in names:
        r = _run_target(name, args.seconds, engine, args.strict, workdir)
        print(f"  {name}: {r['runs']:,} inputs, new: {r['new'] or 'none'}", file=sys.stderr, flush=True)
        results.append(r)
    t = table(results, args.seconds)
    print(t.text())
    if args.write is not None:
        from safebox.tools.bench import default_results_path, generated_line, update_section
        path = args.write or default_results_path()
        cmd = f"python -m safebox.tools.fuzz --seconds {args.seconds:g} --engine {engine} --write"
        update_section(path, "fuzz", "\n".join([
            "## Fuzzing", "", generated_line(cmd), "",
            f"Reproduce: `{cmd.replace(' --write', '')}` (atheris from the `fuzz` extra; `--engine hypothesis` "
            "without it). The bounded hypothesis properties run in the test suite: `tests/test_fuzz_*.py`.",
            "", t.markdown()]))
        print(f"wrote the fuzzing section of {path}", file=sys.stderr)
    if os.environ.get("SAFEBOX_FUZZ_JSON"):
        print(json.dumps(results))
    return 1 if any(r["new"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
