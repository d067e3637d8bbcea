"""Differences between two `report.json` files, ignoring what changes from run to run (keys naming
times, timings, seconds or library versions, the output folder, and the time columns of markdown
tables), so that a refactoring can show that a study's results did not move.

    python scripts/diff_reports.py OLD/report.json NEW/report.json [--rel 1e-5]

Prints one line per differing value (its path, both values); numbers within `--rel` relative
difference are listed apart as "close". Exit status 0 when nothing differs beyond `--rel`, 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

IGNORED = ("time", "timing", "seconds", "libraries", "toolkit_version")
IGNORED_PATHS = ("/config/out",)  # where the report was written
TIME_COLUMNS = ("ms/", "seconds", "time")  # markdown table headers holding timings


def _table(text: str) -> str:
    """A markdown table without its timing columns."""
    rows = [r.split("|") for r in text.split("\n")]
    drop = {i for i, h in enumerate(rows[0]) if any(w in h.lower() for w in TIME_COLUMNS)}
    return "\n".join("|".join(c for i, c in enumerate(r) if i not in drop) for r in rows)


def _ignored(key: str) -> bool:
    return any(word in key.lower() for word in IGNORED)


def diff(a, b, path: str = ""):
    """Yield (path, old, new) for every differing leaf."""
    if path in IGNORED_PATHS:
        return
    if isinstance(a, str) and isinstance(b, str) and a.startswith("|") and b.startswith("|"):
        a, b = _table(a), _table(b)
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if _ignored(str(k)):
                continue
            if k not in a or k not in b:
                yield f"{path}/{k}", a.get(k, "<missing>"), b.get(k, "<missing>")
            else:
                yield from diff(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        yield path, a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rel", type=float, default=1e-5, help="relative difference below which numbers count as close")
    args = ap.parse_args()
    with open(args.old) as f:
        old = json.load(f)
    with open(args.new) as f:
        new = json.load(f)
    far, close = [], []
    for path, x, y in diff(old, new):
        num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        near = num and abs(x - y) <= args.rel * max(abs(x), abs(y), 1e-12)
        (close if near else far).append((path, x, y))
    for label, rows in (("close", close), ("different", far)):
        for path, x, y in rows:
            print(f"{label}: {path}: {x!r} -> {y!r}")
    print(f"{len(far)} different, {len(close)} close (relative difference <= {args.rel:g})")
    return 1 if far else 0


if __name__ == "__main__":
    sys.exit(main())
