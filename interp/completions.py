"""Every generated answer on disk: `completions.jsonl`, and the behaviour table computed from it.

The file is JSON lines. Line 1 is a header, `{"format": "safety-heads/completions/v1", "judge":
{...}, ...}`: the judge's settings (every phrase, case sensitivity, the short-answer rule) and
whatever the writer adds (the model, the data, the generation length). Every other line is one
answer (`Completion`): prompt id, text, label, jailbreak family and strength, the condition it was
generated under ("baseline", an intervention's name with its strength `alpha`, or "defense:NAME"),
the prompt set it came from ("all", a split name, "over_refusal"), the answer, its one-pass refusal
score and the judge's verdict.

`behaviour_table(rows)` is the table of `safety-heads eval`, with every rate as
`{"rate", "n", "ci95"}` (Wilson) and every mean score as `{"mean", "n", "ci95"}` (bootstrap over
prompts), plus the agreement of the score with the verdict. `safety-heads eval` computes its table
from the rows it writes, and `safety-heads judge` from the rows it reads (re-judged), so the same
file and judge give the same table to the last digit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterable, Sequence

from interp.errors import InputError
from interp.evaluate import RefusalEval
from interp.scoring import RefusalJudge
from interp.stats import agreement, bootstrap_mean, rate_record

FORMAT = "safety-heads/completions/v1"
OVER_REFUSAL = "over_refusal"  # the `set` of over-refusal look-alikes: reported apart from the table's labels


@dataclass(frozen=True)
class Completion:
    """One generated answer and how it was judged."""

    prompt_id: str
    label: str
    family: str | None
    strength: int | None  # the jailbreak's strength (None: a plain request)
    condition: str  # "baseline", an intervention's name, or "defense:NAME"
    answer: str
    score: float | None  # one-pass refusal score at the first response position (> 0 leans to refuse)
    refused: bool  # the judge's verdict on `answer`
    alpha: float | None = None  # the strength of the intervention `condition` names
    set: str = "test"  # the prompt set: "all", a split name, or "over_refusal"
    prompt: str = ""
    max_new_tokens: int | None = None

    @property
    def condition_key(self) -> str:
        return self.condition if self.alpha is None else f"{self.condition}@{self.alpha:g}"

    def to_json(self) -> str:
        d = asdict(self)
        if d["score"] is not None and not math.isfinite(d["score"]):
            d["score"] = None  # NaN is not JSON
        return json.dumps(d, ensure_ascii=False)


FIELDS = tuple(f.name for f in fields(Completion))
REQUIRED = ("prompt_id", "label", "family", "strength", "condition", "answer", "score", "refused")


def judge_header(judge: RefusalJudge) -> dict:
    """The judge's full settings (`describe()` plus every phrase): enough to rebuild it."""
    return {**judge.describe(), "phrases": list(judge.phrases)}


def judge_from_header(header: dict) -> RefusalJudge:
    j = header.get("judge") or {}
    if j.get("type", "substring") != "substring" or not j.get("phrases"):
        raise InputError("the completions file's header names no substring judge with phrases; pass --refusal-phrases")
    return RefusalJudge(tuple(j["phrases"]), bool(j.get("case_sensitive", False)), int(j.get("min_words", 1)))


def completions_from_eval(ev: RefusalEval, condition: str = "baseline", alpha: float | None = None, set: str = "test",
                          max_new_tokens: int | None = None) -> list[Completion]:
    """One `Completion` per prompt of an evaluation pass."""
    scores = ev.scores.tolist()
    return [Completion(p.id, p.label, p.family, p.strength, condition, a, float(s), bool(r), alpha, set, p.text,
                       max_new_tokens)
            for p, a, r, s in zip(ev.prompts, ev.answers, ev.refused, scores)]


def write_completions(path: str | Path, rows: Iterable[Completion], header: dict, append: bool = False) -> Path:
    """Write `header` (given the format tag) and `rows`; `append` adds rows to an existing file
    written with the same judge (another condition of the same study)."""
    path = Path(path)
    head = {"format": FORMAT, **header}
    if "judge" not in head:
        raise InputError("a completions header needs the judge's settings (interp.completions.judge_header)")
    if append and path.exists():
        old, _ = read_completions(path)
        if old.get("judge") != head["judge"]:
            raise InputError(f"{path} was judged with other settings; write these answers to another file")
        with path.open("a", encoding="utf-8") as f:
            f.writelines(r.to_json() + "\n" for r in rows)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(head, ensure_ascii=False) + "\n")
        f.writelines(r.to_json() + "\n" for r in rows)
    tmp.replace(path)  # a reader never sees half a file
    return path


def read_completions(path: str | Path) -> tuple[dict, list[Completion]]:
    """(header, rows) of a completions file; a clear error naming the line for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"completions file {path} does not exist; `safety-heads eval --out DIR` writes DIR/completions.jsonl")
    header: dict | None = None
    rows: list[Completion] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n} is not JSON ({e.msg}); a completions file has one JSON object per line") from None
            if n == 1:
                if not isinstance(d, dict) or d.get("format") != FORMAT:
                    raise InputError(f"{path} does not start with a {FORMAT} header; is it a completions file?")
                header = d
                continue
            missing = [k for k in REQUIRED if k not in d] if isinstance(d, dict) else list(REQUIRED)
            if missing:
                raise InputError(f"{path}:{n} lacks {missing}; every line needs {list(REQUIRED)}")
            rows.append(Completion(**{k: d[k] for k in FIELDS if k in d}))
    if header is None:
        raise InputError(f"{path} is empty; a completions file starts with a {FORMAT} header")
    return header, rows


def rejudge(rows: Sequence[Completion], judge: RefusalJudge) -> list[Completion]:
    """The same rows with `refused` from `judge`."""
    verdicts = judge([r.answer for r in rows]) if rows else []
    return [replace(r, refused=bool(v)) for r, v in zip(rows, verdicts)]


def _strength(r: Completion) -> int:
    return int(r.strength or 0)


def behaviour_table(rows: Sequence[Completion], seed: int = 0) -> dict:
    """The behaviour table of one condition's rows: {"refusal_rate": {"harmful", "harmless",
    "jailbreak": {family: {strength: rate}}, "jailbreak_harmless": ..., "over_refusal"},
    "refusal_score": {...}, "n_prompts", "agreement"}, plus "jailbreak_all" (every harmful jailbreak
    prompt pooled) when there are any. Strength "0" of a family is the plain
    request of that label (the family's starting point); every rate is {"rate", "n", "ci95"}."""
    main = [r for r in rows if r.set != OVER_REFUSAL]
    over = [r for r in rows if r.set == OVER_REFUSAL]

    def pick(label, family=None, strength=None, among=main):
        return [r for r in among if r.label == label and r.family == family
                and (strength is None or _strength(r) == strength)]

    def rate(sel):
        return rate_record([r.refused for r in sel])

    def mean(sel):
        return bootstrap_mean([math.nan if r.score is None else r.score for r in sel], seed=seed)

    families: dict[str, list[int]] = {}
    for r in main:
        if r.family is not None:
            families.setdefault(r.family, [])
            if _strength(r) not in families[r.family]:
                families[r.family].append(_strength(r))
    rr = {"harmful": rate(pick("harmful")), "harmless": rate(pick("harmless")), "jailbreak": {}, "jailbreak_harmless": {}}
    jb_all = [r for r in main if r.label == "harmful" and r.family is not None]
    if jb_all:  # every harmful jailbreak prompt pooled (the rate a stage reports over its jailbreak sample)
        rr["jailbreak_all"] = rate(jb_all)
    sc = {"harmful": mean(pick("harmful")), "harmless": mean(pick("harmless")), "jailbreak": {}}
    for fam in sorted(families):
        strengths = sorted(families[fam])
        for key, label in (("jailbreak", "harmful"), ("jailbreak_harmless", "harmless")):
            if not any(r.family == fam and r.label == label for r in main):
                continue  # e.g. a user's jailbreak file: no harmless controls
            row = {"0": rate(pick(label))}
            row.update({str(s): rate(pick(label, fam, s)) for s in strengths})
            rr[key][fam] = row
        sc["jailbreak"][fam] = {str(s): mean(pick("harmful", fam, s)) for s in strengths}
    if over:
        rr[OVER_REFUSAL] = rate([r for r in over if r.label == "harmless"])
        sc[OVER_REFUSAL] = mean([r for r in over if r.label == "harmless"])
    scores = [math.nan if r.score is None else r.score for r in rows]
    return {"refusal_rate": rr, "refusal_score": sc, "n_prompts": len(main),
            "agreement": agreement(scores, [r.refused for r in rows], seed=seed)}


def conditions(rows: Sequence[Completion]) -> dict[str, list[Completion]]:
    """Rows grouped by condition (name@alpha), in the order they first appear."""
    out: dict[str, list[Completion]] = {}
    for r in rows:
        out.setdefault(r.condition_key, []).append(r)
    return out


def tables(rows: Sequence[Completion], seed: int = 0) -> dict:
    """One behaviour table for a single-condition file; {"conditions": {name: table}} otherwise."""
    groups = conditions(rows)
    if len(groups) == 1:
        return behaviour_table(rows, seed)
    return {"conditions": {k: behaviour_table(v, seed) for k, v in groups.items()}}


__all__ = ["FORMAT", "Completion", "behaviour_table", "completions_from_eval", "conditions", "judge_from_header",
           "judge_header", "read_completions", "rejudge", "tables", "write_completions"]
