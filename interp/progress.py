"""Progress a person can follow: a tqdm bar on a terminal; one line per step on stderr otherwise
(a batch job, a log file), with the counts done and the time left, so that a long search written
to a file is never silent.

`progress_bar(total, label, unit)` is the bar of a search (every step counted with `.update(n)`);
`Stages` announces a command's stages: one line as each starts and ends, with the time left at
the pace so far; `Steps` the named steps of a long stage; `pass_bar` one pass of generation
(prompts done of the pass's total).

Everything here writes to stderr (stdout carries a command's JSON), labels its lines with the
stage and step it runs in (`scope`), and says nothing inside `silenced()` (`run_study(...,
progress=False)`).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar

MIN_SECONDS = 5.0  # a step line at most this often (and at 25%, 50%, 75% and the end)
PASS_SECONDS = 30.0  # a generation pass: a line at most this often, none before MIN_SECONDS but the last
_SILENT: ContextVar[bool] = ContextVar("progress_silent", default=False)
_SCOPE: ContextVar[tuple[str, ...]] = ContextVar("progress_scope", default=())


def enabled() -> bool:
    """False inside `silenced()`: no bar and no progress line."""
    return not _SILENT.get()


@contextmanager
def silenced(on: bool = True):
    """No progress shown inside (`on=False`: no change)."""
    token = _SILENT.set(True) if on else None
    try:
        yield
    finally:
        if token is not None:
            _SILENT.reset(token)


@contextmanager
def scope(name: str):
    """Progress shown inside is labelled `name` (after the enclosing scopes': "steering: sweep")."""
    token = _SCOPE.set(_SCOPE.get() + (name,))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def in_scope() -> bool:
    """True inside a `scope` (a study's stage): where passes show their progress by default."""
    return bool(_SCOPE.get())


def where(what: str | None = None) -> str:
    """The label of progress shown here: the scopes, then `what`."""
    return ": ".join(_SCOPE.get() + ((what,) if what else ())) or "working"


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
    """The bar's interface (`update`, context manager) printing lines instead of redrawing: at 25%,
    50%, 75%, at most every `every` seconds, none of these before `after` seconds; the last always
    (`quiet_short`: only when the work took `after` seconds or more). `set_postfix_str(note)` and
    `update(0)`, as on a tqdm bar, say where within a step the work is (a line when one is due)."""

    def __init__(self, total: int, label: str, unit: str = "step", file=None, every: float = MIN_SECONDS,
                 after: float = 0.0, quiet_short: bool = False):
        self.total, self.label, self.unit, self.file = max(int(total), 0), label, unit, file
        self.every, self.after, self.quiet_short, self.note = every, after, quiet_short, ""
        self.n, self.t0 = 0, time.perf_counter()
        self.last = self.t0
        self.marks = {max(1, round(self.total * f)) for f in (0.25, 0.5, 0.75, 1.0)} if self.total else set()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        elapsed = now - self.t0
        if self.n >= self.total:
            if self.marks and not (self.quiet_short and elapsed < self.after):  # the last line once
                say(f"{self.label}: {self.total}/{self.total} {plural(self.unit)} done in {duration(elapsed)}", self.file)
            self.marks = set()
        elif elapsed >= self.after and (self.n in self.marks or now - self.last >= self.every):
            self.last = now
            left = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
            say(f"{self.label}: {self.n}/{self.total} {plural(self.unit)} done, {duration(elapsed)} elapsed"
                + (f", about {duration(left)} left" if self.n else "") + (f" ({self.note})" if self.note else ""), self.file)
            self.marks = {m for m in self.marks if m > self.n}

    def set_postfix_str(self, note: str = "", refresh: bool = True) -> None:
        self.note = note

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
    if label is not None and enabled() and not _is_terminal(out):
        return LineProgress(total, label, unit, out)
    return tqdm(total=total, desc=label or "", unit=unit, disable=True if label is None or not enabled() else None,
                mininterval=1.0, leave=False, file=out)


def pass_bar(total: int, what: str = "generating", unit: str = "prompt", file=None, quiet_short: bool = False):
    """One pass over prompts (`.update(prompts done)`), labelled by the scope it runs in: a bar on
    a terminal (shown after a second); otherwise one line as the pass ends (`quiet_short`: only
    when it took MIN_SECONDS or more: the many short scoring passes of a calibration say nothing),
    and in a pass longer than MIN_SECONDS a line at 25%, 50%, 75% and at most every PASS_SECONDS,
    with the time left (and the bar's postfix: which batch, which token)."""
    from tqdm.auto import tqdm

    out = file or sys.stderr
    if enabled() and not _is_terminal(out):
        return LineProgress(total, where(what), unit, out, every=PASS_SECONDS, after=MIN_SECONDS, quiet_short=quiet_short)
    return tqdm(total=total, desc=where(what), unit=unit, disable=not enabled(), mininterval=1.0, delay=1.0,
                leave=False, file=out)


def counted(items, bar, size=len):
    """`items`, counting each on `bar` (`size(item)` units) once the loop's body has run; the bar
    is closed when they run out."""
    for item in items:
        yield item
        bar.update(size(item))
    bar.close()


class Stages:
    """One line as each stage of a command starts and ends (stderr), with the counts done and the
    time left at the pace so far (`total`: how many stages the command runs)."""

    def __init__(self, total: int, what: str = "stage", file=None):
        self.total, self.what, self.file = total, what, file
        self.done, self.timed, self.seconds, self.t0 = 0, 0, 0.0, time.perf_counter()

    def start(self, name: str) -> float:
        if enabled():
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
        if enabled():
            say(f"{self.what} {self.done}/{self.total} {name}: done in {duration(took)}{note}; {tail}", self.file)


def step_line(label: str, done: int, total: int, started: float, note: str = "", file=None) -> None:
    """One line per step of a search whose steps are few and long (off a terminal only): counts
    done, the time since `started` (`time.perf_counter()` as the first step began), and the most
    time left at that pace (a search may stop before its last step)."""
    out = file or sys.stderr
    if _is_terminal(out) or not enabled():
        return
    elapsed = time.perf_counter() - started
    left = elapsed / max(done, 1) * max(total - done, 0)
    say(f"{label}: step {done}/{total} done{', ' + note if note else ''}, {duration(elapsed)} elapsed; at most about "
        f"{duration(left)} left", out)


@contextmanager
def one_stage(name: str, file=None):
    """A command of one stage: its start and end lines when stderr is not a terminal."""
    out = file or sys.stderr
    if _is_terminal(out) or not enabled():
        yield
        return
    lines = Stages(1, file=out)
    t = lines.start(name)
    yield
    lines.end(name, t)


class Steps:
    """The named steps of a long stage: `steps.next(name)` as each starts (the one before it is
    then done), `total` known up front or set before the first step. On a terminal a bar over the
    steps; otherwise one line as each step ends, with the time left at the pace so far. Progress
    shown during a step (a generation pass) is labelled with the stage's and the step's names."""

    def __init__(self, total: int = 0, label: str | None = None, file=None):
        self.total, self.label, self.file = total, label or where(), file or sys.stderr
        self._prefix = () if label is None or _SCOPE.get()[-1:] == (label,) else (label,)  # the label in the scope once
        self.done, self.name, self.bar, self._token = 0, None, None, None
        self.t0 = self.t = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(finished=exc_type is None)

    def next(self, name: str) -> None:
        self._end()
        if self.bar is None and enabled() and _is_terminal(self.file):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.label, unit="step", mininterval=1.0, leave=False, file=self.file)
        if self.bar is not None:
            self.bar.set_postfix_str(name, refresh=False)
        self.name, self.t = name, time.perf_counter()
        self._token = _SCOPE.set(_SCOPE.get() + self._prefix + (name,))

    def _end(self) -> None:
        if self.name is None:
            return
        _SCOPE.reset(self._token)
        self.done += 1
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
        elif enabled():
            total = max(self.total, self.done)
            left = (now - self.t0) / self.done * (total - self.done)
            say(f"{self.label}: step {self.done}/{total} {self.name} done in {duration(now - self.t)}; "
                + (f"about {duration(left)} left at the pace so far" if total > self.done
                   else f"all done in {duration(now - self.t0)}"), self.file)
        self.name = None

    def close(self, finished: bool = True) -> None:
        if finished:
            self._end()
        elif self.name is not None:
            _SCOPE.reset(self._token)
            self.name = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["LineProgress", "Stages", "Steps", "counted", "duration", "enabled", "in_scope", "one_stage", "pass_bar",
           "progress_bar", "say", "scope", "silenced", "where"]
