"""Benchmarks: printed tables with the machine noted, each against a baseline run side by side.

The convention every benchmark module in this folder follows (`python -m safebox.tools.bench`
runs them all and writes RESULTS.md):

    def run(quick: bool = False) -> list[Table]

`quick` is for smoke tests: small counts, a second or two. A module may also just print and
return None: its printed text is then kept as it is. A module that fails is reported as failed
in the results, and the others still run.

`Table` is deliberately plain (title, columns, rows of already formatted cells, notes), so a
module needs nothing from here but the class.
"""

from __future__ import annotations

import argparse

import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    """One printed result: `rows` hold cells already formatted as text (numbers are fine too)."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """A fixed-width table for the terminal."""
        cells = [[str(c) for c in self.columns], *[[_cell(c) for c in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(self.columns))]
        lines = [self.title, "-" * len(self.title)]
        for n, row in enumerate(cells):
            lines.append("  ".join(c.rjust(w) if i and _numeric(c) else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"**{self.title}**", "", "| " + " | ".join(str(c) for c in self.columns) + " |",
               "|" + "|".join("---:" if i and self.rows and all(_numeric(_cell(r[i])) for r in self.rows if i < len(r))
                       else "---" for i in range(len(self.columns))) + "|"]
        out += ["| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out)


_NUMERIC = re.compile(r"^[-+]?[\d,.]+(\s?(x|%|ms|s|us|MB|MiB|KiB))?$|^n/a$|^-$")


def _numeric(text: str) -> bool:
    """Right-align numbers (with a unit), left-align words."""
    return bool(_NUMERIC.match(text.strip()))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def as_table(obj: Any) -> Table | None:
    """A Table from what another module returned (a Table, a duck-typed table or a dict), else None."""
    if isinstance(obj, Table):
        return obj
    get = obj.get if isinstance(obj, dict) else (lambda name, default=None: getattr(obj, name, default))
    title, columns, rows = get("title"), get("columns"), get("rows")
    if title is None or columns is None or rows is None:
        return None
    return Table(str(title), list(columns), [list(r) for r in rows], list(get("notes", None) or []))


# -- the machine ------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Model", "Hardware"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        if m:
            return m.group(1).strip()
    return platform.machine()


def machine() -> dict[str, str]:
    """What a figure depends on: CPU, cores, Python, OS, and the disk the temp files go to."""
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def machine_line() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, {m['python']}, {m['os']} ({m['machine']})"


# -- timing helpers ---------------------------------------------------------------------

def rate(func: Callable[[], int], *, min_s: float = 0.5, repeats: int = 3) -> float:
    """Items per second: `func()` does some items and returns how many; best of `repeats` runs
    of at least `min_s` each (the best run is the one least disturbed by the rest of the machine)."""
    best = 0.0
    for _ in range(repeats):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_s or done == 0:
            done += func()
        best = max(best, done / elapsed)
    return best


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between the closest ranks; the median is p=50."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (k - low))


# -- the results page ---------------------------------------------------------------------

_MARK = "<!-- {} {} -->"
RESULTS_HEADER = """# Results: faults, attacks and speed

Generated by the commands named in each section; re-run them to refresh a section (each
replaces only its own part of this page). Figures depend on the machine named with them.
"""


def read_section(path: str | Path, name: str) -> str | None:
    """Section `name` of the results page at `path` as it is now (None: no such section)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    begin, end = _MARK.format("begin", name), _MARK.format("end", name)
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def update_section(path: str | Path, name: str, markdown: str) -> None:
    """Replace section `name` of the results page at `path` (made if missing), keeping the others.

    Sections are delimited by `<!-- begin NAME -->` and `<!-- end NAME -->`; a new section is
    put in the order bench, attacks, fuzz, chaos when those exist, else at the end.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else RESULTS_HEADER
    begin, end = _MARK.format("begin", name), _MARK.format("end", name)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        order = ["bench", "attacks", "fuzz", "chaos", "probe-ack-loss", "probe-adv-drop", "probe-hub-kill"]
        insert_at = len(text)
        if name in order:
            for later in order[order.index(name) + 1:]:
                mark = _MARK.format("begin", later)
                if mark in text:
                    insert_at = text.index(mark)
                    break
        text = text[:insert_at].rstrip("\n") + "\n\n" + block + "\n\n" + text[insert_at:].lstrip("\n")
    path.write_text(text.rstrip("\n") + "\n")


def generated_line(command: str) -> str:
    return (f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"machine: {machine_line()}.")


def default_results_path() -> Path:
    """RESULTS.md at the repository root (this package lives in <root>/tools/bench)."""
    return Path(__file__).resolve().parents[2] / "RESULTS.md"


def bench_parser(module: str, doc: str | None,
                 quick_help: str = "small counts (smoke test)") -> argparse.ArgumentParser:
    """The command line every benchmark module starts from: `python -m safebox.tools.bench.<module> [--quick]`."""
    parser = argparse.ArgumentParser(prog=f"python -m safebox.tools.bench.{module}",
                                     description=(doc or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def quick_main(module: str, doc: str | None, run: Callable[[bool], Sequence[Table]],
               argv: list[str] | None = None) -> int:
    """`main` of a benchmark module whose only option is --quick: run it, print its tables."""
    args = bench_parser(module, doc).parse_args(argv)
    print_tables(run(args.quick))
    return 0


def print_tables(tables: Sequence[Table], file: Any = None) -> None:
    out = file or sys.stdout
    for t in tables:
        print(t.text(), file=out)
        print(file=out)
