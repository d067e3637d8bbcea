"""What every research notebook (`notebooks/NN_*.ipynb`) does before the science, in one call:

    from interp.notebook import setup
    NB = setup(requires=("probes",))   # NB.figures: where figures go; NB.elapsed(): seconds since setup

`setup` finds the repository root, makes the figures folder (`<repo>/figures/`, or where
`SAFETY_HEADS_FIGURES` points: the notebook test uses a temporary folder), and stops "Run All"
cleanly with `SkipNotebook` (a one-line message, no traceback) when a part of the toolkit the
notebook needs is not installed. A cell raises `SkipNotebook` itself when a shipped artifact is
missing; the notebook test reports it as skipped, and as a failure under CI=true.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path


class SkipNotebook(Exception):
    """Stops "Run All" at this cell with a one-line message instead of a traceback."""

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        return [f"SKIPPED: {self}"]


def find_repo_root(start: Path | None = None) -> Path:
    """The safety-heads checkout: the first folder at or above `start` (default: the working
    directory) holding pyproject.toml and interp/; else the checkout this toolkit was imported
    from; else `start`."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "interp").is_dir():
            return p
    src = Path(__file__).resolve().parents[1]
    return src if (src / "pyproject.toml").is_file() else here


def installed(module: str) -> bool:
    """True when `module` can be imported (False also when its parent package is missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class Notebook:
    root: Path
    figures: Path
    t0: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since `setup()`."""
        return time.perf_counter() - self.t0


def setup(requires: tuple[str, ...] = (), start: Path | None = None, quiet: bool = False) -> Notebook:
    """Find the repository root, make the figures folder, and raise `SkipNotebook` if a module in
    `requires` (e.g. "probes", "interp.causal") is not installed."""
    root = find_repo_root(start)
    figures = Path(os.environ.get("SAFETY_HEADS_FIGURES", root / "figures"))
    figures.mkdir(parents=True, exist_ok=True)
    missing = [m for m in requires if not installed(m)]
    if missing:
        raise SkipNotebook(f"this notebook needs {missing}, which this checkout does not have yet")
    if not quiet:
        print(f"repo root: {root}\nfigures:   {figures}")
    return Notebook(root, figures)


__all__ = ["Notebook", "SkipNotebook", "find_repo_root", "installed", "setup"]
