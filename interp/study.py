"""A study's data and settings as values: what every stage of the pipeline takes.

* `StudyConfig`: every option a command takes (model loading, data files, judging, sizes), with
  the defaults defined once here; the CLI builds its flags from it.
* `StudyData`: the study's prompts, already split: `train` (fitting probes, directions, head
  searches, steering vectors), `val` (selection and calibration), `test` (every behaviour number
  reported), plus optional over-refusal look-alikes. Jailbreak prompts (with `family` and
  `strength`) live inside the splits beside the plain requests. The split's seed and fractions
  and each split's prompt ids and hash are recorded by `describe()` in every report.
* Providers: `files_study` reads a user's prompt files; the embedded organism's generator is
  another (`organisms.provider`). `interp.pipeline.load_study_data` picks one from a
  `StudyConfig` (the CLI default is the organism). Analysis code never imports a provider: it takes `StudyData`.
* `Study`: the model, the data and the judge handed to each stage; `StageResult`: what a stage
  returns (its part of the report and its figures).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

from interp.errors import InputError
from interp.generation import GenerationConfig
from interp.model import ChatModel
from interp.prompts import LABELS, Prompt, PromptSet
from interp.scoring import JAILBREAKBENCH_PHRASES, RefusalJudge

SPLITS = ("train", "val", "test")
# the smallest sizes a study takes, here once: StudyConfig, the providers and the CLI (--per-cell,
# --n-train) check these. n_train is plain prompts per label; with fewer than 4 the val split,
# drawn at a quarter of it (at least 4), would outnumber train.
MIN_SIZES = {"per_cell": 1, "fit_per_cell": 1, "n_train": 4, "plain_per_label": 1, "top_per_cell": 1}
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
LABEL_KINDS = ("behaviour", "category")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StudyConfig:
    """Every option of every command, with its one default. `None` data files: the organism's
    prompts; `None` phrases: the model's own (its safety_heads.json) or the common openers."""

    # loading
    model: str = "organism"
    device: str = "cpu"
    dtype: str = "float32"
    chat_template: str | None = None
    truncate: bool = False  # keep the last tokens of prompts longer than the context instead of failing
    skip_bridge_check: bool = False  # load a model whose bridge logits differ from the plain model's (recorded)
    device_map: str | None = None  # split the model (interp.placement): accelerate strategy or JSON file
    max_memory: str | None = None  # per-device budget for device_map, e.g. "0=20GiB,cpu=60GiB"
    offload_folder: str | None = None  # where device_map puts weights on disk
    # data
    harmful: str | None = None
    harmless: str | None = None
    jailbreak: str | None = None
    over_refusal: str | None = None
    text_column: str | None = None
    system_prompt: str | None = None
    category: str | None = None  # keep only these categories of the harmful (and jailbreak) file
    max_per_label: int | None = None  # a seeded subsample of at most this many plain prompts per label
    # jailbreak families built from the prompt files when no --jailbreak file is given: None all of
    # them, () none (`safety-heads eval`'s default: it scores the files it is given), or names
    families: tuple[str, ...] | None = None
    strengths: tuple[int, ...] | None = None  # None: each family's own strengths
    # judging
    refusal_phrases: tuple[str, ...] | None = None
    compliance_phrases: tuple[str, ...] | None = None
    labels: str = "behaviour"  # probe labels: what the model did (refused/complied) or what the prompt is
    # sizes and seeds
    seed: int = 0
    # held-out prompts per (label, family, strength) cell, and (organism providers) plain prompts per
    # label for fitting; None: the demo's scale for the model (DEMO_SIZES, `resolved`)
    per_cell: int | None = None
    n_train: int | None = None
    # organism providers: held-out plain requests per label, and held-out harmful prompts at each
    # jailbreak family's strongest strength (where a jailbreak claim is made); None: per_cell when it
    # was given, else the demo's scale (DEMO_SIZES)
    plain_per_label: int | None = None
    top_per_cell: int | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # files only: train/val/test split
    fit_per_cell: int = 3  # jailbreak prompts per cell in train and val (behaviour labels see them)
    # greedy answer length for the judge; None: the model's default (DEMO_SIZES: what a refusal needs,
    # measured by benchmarks/judge_tokens.py)
    max_new_tokens: int | None = None
    # output
    out: str = "out/demo"
    sections: tuple[str, ...] | None = None  # demo/figures: None runs every stage
    png: bool = False
    # runs that build on each other (interp.reuse): an earlier run's output directory, heads and a
    # direction named by hand; a stage whose outputs are all given is not run
    from_dir: str | None = None
    heads: tuple[tuple[int, int], ...] | None = None
    direction: str | None = None
    # forward passes (interp.batching): prompts per pass and the activation memory one pass may take
    batch_size: int | None = None
    pass_budget: int | None = None

    def __post_init__(self) -> None:
        if self.labels not in LABEL_KINDS:
            raise InputError(f"--labels must be one of {LABEL_KINDS}, got {self.labels!r}")
        if (self.harmful is None) != (self.harmless is None):
            given, missing = ("--harmful", "--harmless") if self.harmful else ("--harmless", "--harmful")
            raise InputError(f"{given} was given without {missing}: pass both prompt files (or neither, for the "
                             "embedded organism's prompts)")
        if (self.jailbreak or self.over_refusal) and self.harmful is None:
            raise InputError("--jailbreak / --over-refusal need --harmful and --harmless files beside them")
        if (self.category or self.max_per_label) and self.harmful is None:
            raise InputError("--category / --max-per-label apply to prompt files: pass --harmful and --harmless")
        if self.max_per_label is not None and self.max_per_label < 1:
            raise InputError(f"--max-per-label must be at least 1, got {self.max_per_label}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        check_sizes(per_cell=self.per_cell, fit_per_cell=self.fit_per_cell, n_train=self.n_train,
                    plain_per_label=self.plain_per_label, top_per_cell=self.top_per_cell)
        check_fractions(self.fractions)
        for name in ("refusal_phrases", "compliance_phrases"):
            v = getattr(self, name)
            if v is not None and not [p for p in v if p.strip()]:
                raise InputError(f"--{name.replace('_', '-')} is empty; pass comma-separated phrases, e.g. \"sorry,i cannot\"")

    @property
    def uses_files(self) -> bool:
        return self.harmful is not None

    def data_options(self) -> dict:
        """The keyword arguments of `files_study` beyond its positional ones."""
        return {"families": self.families, "strengths": self.strengths, "max_per_label": self.max_per_label,
                "category": self.category}

    def describe(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def resolved(self, model) -> "StudyConfig":
        """This config with `per_cell`, `n_train`, `max_new_tokens` (and `plain_per_label`, `top_per_cell`:
        `per_cell` when it was given, else the demo's scale) filled in for `model` where they are None."""
        sizes = demo_sizes(model)
        held = lambda k: sizes[k] if self.per_cell is None else self.per_cell  # noqa: E731
        return replace(self, per_cell=sizes["per_cell"] if self.per_cell is None else self.per_cell,
                       plain_per_label=held("plain_per_label") if self.plain_per_label is None else self.plain_per_label,
                       top_per_cell=held("top_per_cell") if self.top_per_cell is None else self.top_per_cell,
                       n_train=sizes["n_train"] if self.n_train is None else self.n_train,
                       max_new_tokens=sizes["max_new_tokens"] if self.max_new_tokens is None else self.max_new_tokens)


# The demo's default scale. On the toy organisms (a few million parameters) every stage takes
# seconds at the full sizes. On a real model a prompt token costs ~1.5-4 ms of one forward pass on
# 2 CPU cores (SmolLM2-135M), so the full grid at 20 per cell took an hour. There the jailbreak grid
# keeps small cells (per_cell: the dose-response curve) while the rows a claim rests on get the
# sizes that carry one: 32 plain requests per label (baseline, causal heads vs random heads,
# direction ablation/addition, each steering method's chosen point) and 16 harmful prompts at each
# family's strongest strength. benchmarks/demo_time.py times it and checks the sizes.
TOY_PARAMETERS = 10_000_000
# max_new_tokens: the greedy answer length at which the refusal judge's verdict equals its verdict at
# 128 tokens for >= 99% of held-out prompts (benchmarks/judge_tokens.py, docs/judge.md)
DEMO_SIZES = {"toy": {"per_cell": 20, "n_train": 64, "max_new_tokens": 12, "plain_per_label": 20, "top_per_cell": 20},
              "real": {"per_cell": 4, "n_train": 32, "max_new_tokens": 16, "plain_per_label": 32, "top_per_cell": 16}}
CLAIM_SIZES = {"plain_per_label": 32, "top_per_cell": 16}  # the least a real-model claim rests on (issue: findings)
FULL_PER_CELL = DEMO_SIZES["toy"]["per_cell"]  # the held-out cell size the stages' subsamples are set for


def demo_sizes(model) -> dict:
    """The demo's per_cell and n_train for `model`: the toy organisms' or a real model's."""
    n = sum(p.numel() for p in model.bridge.parameters())
    return dict(DEMO_SIZES["toy" if n < TOY_PARAMETERS else "real"])

DemoConfig = StudyConfig  # the demo's settings are the study's


def check_sizes(**sizes: int | None) -> None:
    """Raise InputError for a size below `MIN_SIZES` (None: left to the demo's scale, not checked)."""
    for name, value in sizes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < MIN_SIZES[name]):
            raise InputError(f"{name} must be an integer of at least {MIN_SIZES[name]}, got {value!r}")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(x) for x in fractions)
    if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0 or fr[2] <= 0:
        raise InputError(f"split fractions must be three non-negative numbers (train, val, test) summing to 1, with "
                         f"train and test > 0; got {tuple(fractions)}")
    return fr  # type: ignore[return-value]


def make_judge(cfg: StudyConfig) -> RefusalJudge:
    """JailbreakBench's refusal substrings, plus the user's own refusal phrases (a model that
    refuses with "nope" is judged by "nope")."""
    extra = tuple(p.strip() for p in cfg.refusal_phrases or () if p.strip() and p.strip() not in JAILBREAKBENCH_PHRASES)
    return RefusalJudge(JAILBREAKBENCH_PHRASES + extra)


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class StudyData:
    """A study's prompts, split (see the module docstring)."""

    train: PromptSet
    val: PromptSet
    test: PromptSet
    over_refusal: PromptSet | None = None
    seed: int = 0
    fractions: tuple[float, float, float] | None = DEFAULT_FRACTIONS  # None: the provider split by construction
    provider: str = "files"
    # (family, strength) cells the model was trained to comply with: a planted jailbreak, reported
    # apart from the found ones (the organism declares its own; a user's model has none)
    trained_comply: frozenset = frozenset()
    trained_refuse: frozenset = frozenset()  # (family, strength) cells trained to refuse (strength >= 1)
    families: dict = field(default_factory=dict)  # family -> what its strength counts
    notes: tuple[str, ...] = ()
    caps: tuple[dict, ...] = ()  # every cap applied to the user's data (--max-per-label, --category, per cell)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in SPLITS:
            for p in self.split(name):
                if p.id in seen:
                    raise InputError(f"prompt id {p.id!r} is in both the {seen[p.id]} and the {name} split; "
                                     "each prompt belongs to one split")
                seen[p.id] = name
        for name in ("train", "test"):
            plain = self.plain(name)
            if set(plain.labels) != set(LABELS):
                raise InputError(f"the {name} split has plain prompts of {sorted(set(plain.labels)) or 'no'} label; both "
                                 "harmful and harmless are needed: pass more prompts in each file")

    # ------------------------------------------------------------ views
    def split(self, name: str) -> PromptSet:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; splits are {SPLITS}")
        return getattr(self, name)

    def plain(self, split: str, label: str | None = None) -> PromptSet:
        """The split's plain requests (no jailbreak), of one label or both."""
        return self.split(split).filter(label=label, family=None)

    def jailbreaks(self, split: str, label: str | None = "harmful") -> PromptSet:
        s = self.split(split)
        return PromptSet(f"{s.name}:jailbreaks", tuple(p for p in s if p.family is not None and (label is None or p.label == label)),
                         s.source)

    @property
    def fit(self) -> PromptSet:
        """train + val, plain requests first: what a method that does its own cross-validation fits on."""
        return self.train.concat(self.val, name=f"{self.train.name}+val")

    def texts(self) -> dict[str, list[str]]:
        """Every prompt text by role (for the vocabulary check)."""
        every = [p for s in SPLITS for p in self.split(s)]
        out = {"harmful prompts": [p.text for p in every if p.family is None and p.label == "harmful"],
               "harmless prompts": [p.text for p in every if p.family is None and p.label == "harmless"],
               "jailbreak prompts": [p.text for p in every if p.family is not None]}
        if self.over_refusal is not None:
            out["over-refusal prompts"] = self.over_refusal.texts
        return {k: v for k, v in out.items() if v}

    def describe(self, ids: bool = True) -> dict:
        """What was used, for every report and artifact: provider, seed, fractions, per split the
        counts by label and family, the content hash and (with `ids`) the prompt ids."""
        out: dict = {"provider": self.provider, "seed": self.seed, "fractions": list(self.fractions) if self.fractions else None,
                     "families": self.families, "trained_comply": sorted([list(c) for c in self.trained_comply]),
               "trained_refuse": sorted([list(c) for c in self.trained_refuse]),
                     "splits": {}}
        for name in SPLITS:
            s = self.split(name)
            d = {**s.describe(), "plain": {lab: len(self.plain(name, lab)) for lab in LABELS},
                 "jailbreak": {f: {str(k): len(s.filter(family=f, strength=k)) for k in ks} for f, ks in s.families().items()}}
            if ids:
                d["ids"] = s.ids
            out["splits"][name] = d
        if self.over_refusal is not None:
            out["over_refusal"] = {**self.over_refusal.describe(), **({"ids": self.over_refusal.ids} if ids else {})}
        if self.notes:
            out["notes"] = list(self.notes)
        out["caps"] = [dict(c) for c in self.caps]
        out["sizes"] = {name: len(self.split(name)) for name in SPLITS} | (
            {"over_refusal": len(self.over_refusal)} if self.over_refusal is not None else {})
        return out

    def announce(self, model: ChatModel, new_tokens: int) -> None:
        """Say on stderr how many prompts the study holds and about how long one pass over them takes."""
        from interp.estimate import announce_study

        announce_study(model, {s: self.split(s) for s in SPLITS} | (
            {"over-refusal": self.over_refusal} if self.over_refusal is not None else {}), new_tokens)

    def check_vocabulary(self, model: ChatModel, fix: str) -> dict[str, float]:
        """Raise InputError when a role's prompts are mostly unknown tokens to `model`."""
        from interp.vocab import check_known

        return {what: round(check_known(model, texts, what, fix), 4) for what, texts in self.texts().items()}


def split_prompts(prompts: PromptSet, seed: int, fractions: Sequence[float], by: str = "label") -> dict[str, PromptSet]:
    """Seeded train/val/test split, stratified by label (`by="label"`) or by (label, family,
    strength) cell (`by="cell"`). Each group is shuffled with its own seed-derived generator, so
    adding prompts of one group leaves the others' split unchanged."""
    fr = check_fractions(fractions)
    groups: dict[tuple, list[Prompt]] = {}
    for p in prompts:
        key = (p.label,) if by == "label" else (p.label, p.family or "", p.strength or 0)
        groups.setdefault(key, []).append(p)
    parts: dict[str, list[Prompt]] = {s: [] for s in SPLITS}
    for key in sorted(groups):
        group = list(groups[key])
        random.Random(f"{seed}/{'/'.join(map(str, key))}").shuffle(group)
        n = len(group)
        n_test = max(1, round(fr[2] * n)) if n >= 2 else 0
        n_val = round(fr[1] * n) if n - n_test >= 3 else 0
        parts["train"] += group[:n - n_test - n_val]
        parts["val"] += group[n - n_test - n_val:n - n_test]
        parts["test"] += group[n - n_test:]
    return {s: PromptSet(f"{prompts.name}:{s}", tuple(v), prompts.source) for s, v in parts.items()}


def files_study(model: ChatModel, harmful: str | Path, harmless: str | Path, jailbreak: str | Path | None = None,
                over_refusal: str | Path | None = None, text_column: str | None = None, seed: int = 0,
                per_cell: int = 20, fractions: Sequence[float] = DEFAULT_FRACTIONS, fit_per_cell: int = 3,
                families=None, strengths: Sequence[int] | None = None, max_per_label: int | None = None,
                category: str | None = None) -> StudyData:
    """A study from the user's prompt files (any format `interp.datasets` reads).

    `category` keeps only those categories of the harmful file (and of the jailbreak file when it
    has categories); `max_per_label` keeps a seeded subsample of at most that many plain prompts
    per label (and of over-refusal look-alikes). Plain requests are split train/val/test by `seed`
    and `fractions`, stratified by label. A jailbreak file is split the same way per (family,
    strength) cell (rows without a `family` column become one family named after the file,
    strength 1). Without one, the jailbreak families of `interp.jailbreaks` (`families`: None all,
    () none, or names / `Family` values; `strengths` instead of each family's own) are applied to
    each split's own harmful requests (and, as the over-refusal control, its harmless ones), built
    from the study's material and the model's vocabulary, so no test request is ever seen wrapped
    in training. The model is needed for its vocabulary (suffix tokens, which English families it
    can read) and compliance opener. Every cap applied is said on stderr and recorded in
    `StudyData.caps` (so in `describe()` and every report)."""
    from interp.dataset_readers import subsample_per_label
    from interp.datasets import load_prompt_file
    from interp.study_files import built_jailbreaks, cap_cells, has_category, say, with_role_ids

    def load(path, role, label, cat=None):
        return with_role_ids(load_prompt_file(path, text_column=text_column, fallback_label=label, category=cat), role)

    caps: list[dict] = []

    def cap_labels(ps: PromptSet, role: str) -> PromptSet:
        if max_per_label is None:
            return ps
        out, counts = subsample_per_label(ps, max_per_label, seed)
        for lab, c in counts.items():
            if c["kept"] < c["of"]:
                caps.append({"cap": "max_per_label", "file": role, "label": lab, "kept": c["kept"], "of": c["of"], "seed": seed})
                say(f"--max-per-label {max_per_label}: kept {c['kept']} of the {c['of']} {lab} prompts of {role} "
                    f"(seeded subsample, seed {seed})")
        return out

    H = load(harmful, "harmful", "harmful", category)
    if category is not None:
        caps.append({"cap": "category", "file": "harmful", "categories": category, "kept": len(H)})
        say(f"--category {category}: {len(H)} prompts of {harmful} kept")
    H, L = cap_labels(H, "--harmful"), cap_labels(load(harmless, "harmless", "harmless"), "--harmless")
    for role, ps in (("--harmful", H), ("--harmless", L)):
        wrong = [p for p in ps if p.label != ("harmful" if role == "--harmful" else "harmless")]
        if len(wrong) == len(ps):
            raise InputError(f"every prompt of {role} {ps.source} is labelled {wrong[0].label} by the file itself; "
                             "check that the files are passed to the right flags")
    plain = split_prompts(H.concat(L, name="files"), seed, fractions, by="label")
    notes: list[str] = []
    fams_desc: dict = {}
    if jailbreak is not None:
        J = load(jailbreak, "jailbreak", "harmful", category if category and has_category(jailbreak) else None)
        stem = Path(jailbreak).stem
        J = PromptSet(J.name, tuple(replace(p, family=p.family or stem, strength=p.strength if p.strength is not None else 1)
                                    for p in J), J.source)
        jb = split_prompts(J, seed, fractions, by="cell")
        fams_desc = {f: {"strengths": ss, "strength_counts": "as given in the jailbreak file", "english": None}
                     for f, ss in J.families().items()}
    else:
        jb = built_jailbreaks(model, plain, families, strengths, seed, per_cell, fit_per_cell, notes)
        fams_desc = jb.pop("_families")
    limits = {"train": fit_per_cell, "val": fit_per_cell, "test": per_cell}
    splits = {}
    for s in SPLITS:
        splits[s], dropped = cap_cells(plain[s].concat(jb[s], name=f"files:{s}"), limits[s], seed)
        if dropped:
            caps.append({"cap": "per_cell" if s == "test" else "fit_per_cell", "split": s, "limit": limits[s],
                         "dropped": dropped})
            say(f"{s} split: at most {limits[s]} jailbreak prompts per (label, family, strength) cell; {dropped} "
                f"left out ({'--per-cell' if s == 'test' else 'fit_per_cell'})")
    O = None
    if over_refusal is not None:
        O = cap_labels(load(over_refusal, "over_refusal", "harmless"), "--over-refusal")
        O = PromptSet(O.name, tuple(replace(p, meta={**p.meta, "lookalike": True}) for p in O), O.source)
    return StudyData(splits["train"], splits["val"], splits["test"], O, seed, check_fractions(fractions), "files",
                     families=fams_desc, notes=tuple(notes), caps=tuple(caps))


# ------------------------------------------------------------------ what stages take and return
@dataclass(frozen=True)
class Study:
    """What every stage takes: the model, the data, how answers are judged and generated."""

    model: ChatModel
    data: StudyData
    judge: RefusalJudge = RefusalJudge()
    gen: GenerationConfig = GenerationConfig(max_new_tokens=12, batch_size=64, progress=True)
    labels: str = "behaviour"
    seed: int = 0
    per_cell: int = FULL_PER_CELL  # the test split's cell size: stages scale their subsamples to it (`scaled`)
    # every answer generated by the stages so far (`interp.completions.Completion`), in order: the
    # pipeline writes them to completions.jsonl, and each stage computes its rates from its own rows
    answers: list = field(default_factory=list, compare=False, repr=False)

    def scaled(self, n: int, least: int = 1) -> int:
        """`n` (a stage's subsample size at the full cell size) in proportion to this study's cells,
        at least `least`, never more than `n`."""
        return max(least, min(n, round(n * self.per_cell / FULL_PER_CELL)))

    def __post_init__(self) -> None:
        if self.labels not in LABEL_KINDS:
            raise InputError(f"labels must be one of {LABEL_KINDS}, got {self.labels!r}")

    def record(self, prompts, answers, refused, scores, condition: str, alpha: float | None = None, set: str = "test",
               max_new_tokens: int | None = None) -> list:
        """Keep one `Completion` per prompt (answers of `condition`, e.g. "steering:hsi" at `alpha`)
        for completions.jsonl, and return them: a stage reports rates computed from these rows, so
        `safety-heads judge` on the file gives the report's numbers. `condition` + `alpha` must name one
        measurement of the study (one prompt set under one setting)."""
        from interp.completions import Completion

        key = condition if alpha is None else f"{condition}@{alpha:g}"
        if any(r.condition_key == key and r.set == set for r in self.answers):
            raise ValueError(f"condition {key!r} ({set}) was recorded twice in this study; give each measurement its own name")
        n = self.gen.max_new_tokens if max_new_tokens is None else max_new_tokens
        sc = [float("nan")] * len(answers) if scores is None else [float(x) for x in scores]
        rows = [Completion(p.id, p.label, p.family, p.strength, condition, a, s, bool(r), alpha, set, p.text, n)
                for p, a, r, s in zip(prompts, answers, refused, sc)]
        self.answers.extend(rows)
        return rows

    def record_eval(self, ev, condition: str, alpha: float | None = None, set: str = "test",
                    max_new_tokens: int | None = None) -> list:
        """`record` for an `interp.evaluate.RefusalEval`."""
        return self.record(ev.prompts, ev.answers, ev.refused, ev.scores.tolist(), condition, alpha, set, max_new_tokens)


def figure_ref(name: str) -> str:
    """Where the pipeline writes a stage's figure `name`, relative to the output directory (the
    path a stage's report names it by)."""
    return f"figures/{name}.html"


@dataclass
class StageResult:
    """A stage's part of the report (JSON-ready), its figures (name -> plotly figure; the report
    refers to each as `figure_ref(name)`) and its artifacts (name -> an object with
    `.save(path)`, written as `artifacts/<name>`, or JSON-ready data for a `<name>.json`)."""

    report: dict
    figures: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
