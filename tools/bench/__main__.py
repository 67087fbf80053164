"""`python -m safebox.tools.bench`: run every benchmark present, print the tables, update RESULTS.md.

    python -m safebox.tools.bench [--quick] [--only codec,outbox] [--write [RESULTS.md]] [--json]

Modules are run in the order of MODULES; one that is not there yet is listed as missing and
one that fails is reported with its error: the others still run, and the exit status is 1.
Each module follows the convention in tools/bench/__init__.py: `run(quick) -> list[Table]`,
or `run()`/`main()` that prints (its printed text is kept as it is).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safebox.tools.bench import Table, as_table, default_results_path, generated_line, machine, \
    machine_line, read_section, update_section

# (module, what it measures, who owns it)
MODULES = [
    ("codec", "advertisement decode + verify rate vs Home Assistant's bthome-ble"),
    ("outbox", "outbox write rate vs naive durable baselines"),
    ("receiver", "receiver verified requests/s over TLS vs a no-verify baseline"),
    ("e2e", "end-to-end press latency through the simulated home"),
    ("hub", "hub added latency, backlog drain rate, RSS (issue 4)"),
    ("firmware", "firmware peak heap, device-side latency, modelled battery life (issue 3)"),
    ("console", "call-centre screen: stored -> visible in a real browser under 10,000 homes' load (issue 12)"),
    ("cellular", "broadband down: press -> platform and family, with and without the modem (issue 16)"),
    ("pi", "the hub on a Pi's real stack (virtual Pi: BlueZ, systemd) vs the bumble backend, side by side (issue 10)"),
]


@dataclass
class Outcome:
    name: str
    about: str
    status: str  # "ok", "missing", "failed"
    seconds: float = 0.0
    tables: list[Table] = field(default_factory=list)
    text: str = ""
    error: str = ""


class _Tee(io.TextIOBase):
    """Print as usual and keep a copy."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.copy = io.StringIO()

    def write(self, s: str) -> int:
        self._out.write(s)
        self.copy.write(s)
        return len(s)

    def flush(self) -> None:
        self._out.flush()


def _call(entry: Any, quick: bool) -> Any:
    try:
        params = inspect.signature(entry).parameters
    except (TypeError, ValueError):
        params = {}
    if "quick" in params:
        return entry(quick=quick)
    if entry.__name__ == "main" and "argv" in params:
        return entry(["--quick"] if quick else [])
    return entry()


def run_module(name: str, about: str, quick: bool) -> Outcome:
    full = f"safebox.tools.bench.{name}"
    try:
        module = importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name == full:
            return Outcome(name, about, "missing")
        return Outcome(name, about, "failed", error=f"import: {exc}")
    except Exception as exc:  # a broken module must not stop the others
        return Outcome(name, about, "failed", error=f"import: {type(exc).__name__}: {exc}")
    entry = getattr(module, "run", None) or getattr(module, "main", None)
    if entry is None:
        return Outcome(name, about, "failed", error="has neither run() nor main()")
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(tee):
            result = _call(entry, quick)
    except SystemExit as exc:
        result = None
        if exc.code not in (0, None):
            return Outcome(name, about, "failed", time.perf_counter() - started, text=tee.copy.getvalue(),
                           error=f"exited with status {exc.code}")
    except Exception:
        return Outcome(name, about, "failed", time.perf_counter() - started, text=tee.copy.getvalue(),
                       error=traceback.format_exc(limit=4))
    seconds = time.perf_counter() - started
    tables: list[Table] = []
    if isinstance(result, (list, tuple)):
        tables = [t for t in (as_table(r) for r in result) if t is not None]
    elif (single := as_table(result)) is not None:
        tables = [single]
    printed = tee.copy.getvalue()
    if tables:
        for t in tables:
            print(t.text() + "\n")
        printed = ""  # the tables say it
    return Outcome(name, about, "ok", seconds, tables, printed.strip())


def render_markdown(outcomes: list[Outcome], quick: bool, command: str) -> str:
    lines = ["## Benchmarks", "", generated_line(command), ""]
    if quick:
        lines += ["**Quick mode: small counts, figures are only indicative.**", ""]
    for o in outcomes:
        lines.append(f"### {o.name}: {o.about}")
        lines.append("")
        lines.append(f"Reproduce: `python -m safebox.tools.bench.{o.name}`"
                     + (f" (took {o.seconds:.0f} s)" if o.status == "ok" else ""))
        lines.append("")
        if o.status == "missing":
            lines += ["Not present yet (`tools/bench/%s.py`)." % o.name, ""]
            continue
        if o.status == "failed":
            lines += ["**Failed:**", "", "```", o.error.strip(), "```", ""]
        for t in o.tables:
            lines += [t.markdown(), ""]
        if o.text:
            lines += ["```", o.text, "```", ""]
    return "\n".join(lines)


def _modules(markdown: str) -> tuple[str, dict[str, str]]:
    """(the text before the first module, {module name: its subsection})."""
    head, *parts = markdown.split("\n### ")
    return head, {part.split(":", 1)[0]: "### " + part.rstrip() + "\n" for part in parts}


def keep_others(previous: str, markdown: str) -> str:
    """`markdown` (some modules run now) with every other module's subsection kept from
    `previous`, in the order of MODULES."""
    head, new = _modules(markdown)
    _, old = _modules(previous)
    names = [m for m, _ in MODULES if m in new or m in old]
    kept = [m for m in names if m not in new]
    note = (f"(Run now: {', '.join(new)}; the figures of {', '.join(kept)} are from their last run.)\n\n"
            if kept else "")
    return head.rstrip() + "\n\n" + note + "\n".join(new.get(m) or old[m] for m in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safebox.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: checks that everything runs")
    parser.add_argument("--only", help="comma-separated module names (default: all of " +
                        ", ".join(m for m, _ in MODULES) + ")")
    parser.add_argument("--write", nargs="?", const=str(default_results_path()), metavar="RESULTS.md",
                        help="update the benchmarks section of the results page (default path: the repository's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end instead of a summary")
    args = parser.parse_args(argv)
    wanted = [m for m, _ in MODULES]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(wanted) - {m for m, _ in MODULES}
        if unknown:
            parser.error(f"unknown module(s): {', '.join(sorted(unknown))}")
    about = dict(MODULES)
    print(f"machine: {machine_line()}\n")
    outcomes = []
    for name in wanted:
        print(f"== {name}: {about[name]}", flush=True)
        outcome = run_module(name, about[name], args.quick)
        if outcome.status == "missing":
            print(f"   not present yet (tools/bench/{name}.py)\n")
        elif outcome.status == "failed":
            print(f"   FAILED: {outcome.error}\n", file=sys.stderr)
        outcomes.append(outcome)
    if args.write:
        command = "python -m safebox.tools.bench" + (" --quick" if args.quick else "") + \
                  (f" --only {args.only}" if args.only else "") + " --write"
        markdown = render_markdown(outcomes, args.quick, command)
        if args.only:  # the modules not run keep the figures of their last run
            markdown = keep_others(read_section(args.write, "bench") or "", markdown)
        update_section(args.write, "bench", markdown)
        print(f"wrote the benchmarks section of {args.write}")
    if args.json:
        print(json.dumps({
            "machine": machine(),
            "modules": [{"name": o.name, "status": o.status, "seconds": round(o.seconds, 1), "error": o.error,
                         "tables": [{"title": t.title, "columns": list(t.columns),
                                     "rows": [[str(c) for c in r] for r in t.rows], "notes": t.notes}
                                    for t in o.tables], "text": o.text} for o in outcomes],
        }))
    else:
        summary = ", ".join(f"{o.name} {o.status}" for o in outcomes)
        print(f"benchmarks: {summary}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
