"""Progress a person can follow: a tqdm bar on a terminal; one line per step on stderr otherwise
(a batch job, a log file), with the counts done and the time left, so that a long search written
to a file is never silent.

`progress_bar(total, label, unit)` is the bar of a search (every step counted with `.update(n)`);
`Stages` announces a command's stages: one line as each starts and ends, with the time left at
the pace so far.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

MIN_SECONDS = 5.0  # a step line at most this often (and at 25%, 50%, 75% and the end)


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


def say(line: str, file=None) -> None:
    print(f"safety-heads: {line}", file=file or sys.stderr, flush=True)


class LineProgress:
    """The bar's interface (`update`, context manager) printing lines instead of redrawing."""

    def __init__(self, total: int, label: str, unit: str = "step", file=None):
        self.total, self.label, self.unit, self.file = max(int(total), 0), label, unit, file
        self.n, self.t0 = 0, time.perf_counter()
        self.last = self.t0
        self.marks = {max(1, round(self.total * f)) for f in (0.25, 0.5, 0.75, 1.0)} if self.total else set()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.n in self.marks or now - self.last >= MIN_SECONDS or self.n >= self.total:
            self.last = now
            elapsed = now - self.t0
            left = elapsed / self.n * max(self.total - self.n, 0) if self.n else float("nan")
            say(f"{self.label}: {min(self.n, self.total)}/{self.total} {plural(self.unit)} done, {duration(elapsed)} elapsed, "
                f"about {duration(left)} left", self.file)
            self.marks = {m for m in self.marks if m > self.n}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, label: str | None, unit: str = "step", file=None):
    """A tqdm bar when `label` is given and the output (stderr by default) is a terminal; one line
    per step (at most every few seconds) when it is not; nothing without a label."""
    from tqdm.auto import tqdm

    out = file or sys.stderr
    if label is not None and not _is_terminal(out):
        return LineProgress(total, label, unit, out)
    return tqdm(total=total, desc=label or "", unit=unit, disable=True if label is None else None, mininterval=1.0,
                leave=False, file=file)


class Stages:
    """One line as each stage of a command starts and ends (stderr), with the counts done and the
    time left at the pace so far (`total`: how many stages the command runs)."""

    def __init__(self, total: int, what: str = "stage", file=None):
        self.total, self.what, self.file = total, what, file
        self.done, self.timed, self.seconds, self.t0 = 0, 0, 0.0, time.perf_counter()

    def start(self, name: str) -> float:
        say(f"{self.what} {self.done + 1}/{self.total} {name}: started", self.file)
        return time.perf_counter()

    def end(self, name: str, t: float, note: str = "", timed: bool = True) -> None:
        """`timed=False`: a stage that did no work (given, not recomputed) does not set the pace."""
        took = time.perf_counter() - t
        self.done += 1
        if timed:
            self.timed += 1
            self.seconds += took
        if self.done >= self.total:
            tail = f"all done in {duration(time.perf_counter() - self.t0)}"
        elif self.timed:
            tail = f"about {duration(self.seconds / self.timed * (self.total - self.done))} left at the pace so far"
        else:
            tail = f"{self.total - self.done} to go"
        say(f"{self.what} {self.done}/{self.total} {name}: done in {duration(took)}{note}; {tail}", self.file)


def step_line(label: str, done: int, total: int, started: float, note: str = "", file=None) -> None:
    """One line per step of a search whose steps are few and long (off a terminal only): counts
    done, the time since `started` (`time.perf_counter()` as the first step began), and the most
    time left at that pace (a search may stop before its last step)."""
    out = file or sys.stderr
    if _is_terminal(out):
        return
    elapsed = time.perf_counter() - started
    left = elapsed / max(done, 1) * max(total - done, 0)
    say(f"{label}: step {done}/{total} done{', ' + note if note else ''}, {duration(elapsed)} elapsed; at most about "
        f"{duration(left)} left", out)


@contextmanager
def one_stage(name: str, file=None):
    """A command of one stage: its start and end lines when stderr is not a terminal."""
    out = file or sys.stderr
    if _is_terminal(out):
        yield
        return
    lines = Stages(1, file=out)
    t = lines.start(name)
    yield
    lines.end(name, t)


__all__ = ["LineProgress", "Stages", "duration", "one_stage", "progress_bar", "say"]
