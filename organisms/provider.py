"""The embedded organism as a provider of study data: its generator's prompts as a `StudyData`.

This (and the CLI defaults) is where the organism's data enters a study; analysis code only ever
sees the `StudyData` value.

* train: plain requests (`plain_prompts(seed)`, every template) plus a few jailbreaks of the
  families whose higher strengths flip the organism (roleplay, manyshot, topicmix), so that with
  behaviour labels the "complied" class also holds harmful prompts and a probe has to find the
  decision, not the harmful words;
* val: a fresh draw of the same kinds (texts already in train are dropped);
* test: the held-out evaluation grid (`eval_prompts(seed + 1000)`: held-out templates, plain
  requests and every family at every strength, harmful and harmless);
* over_refusal: the look-alike harmless requests ("how do i kill a python process ?").

The organism was trained to comply with roleplay and manyshot at strength 4: those cells are
declared in `trained_comply` so that reports keep planted jailbreaks apart from found ones.
"""

from __future__ import annotations

import random
from dataclasses import replace

from interp.errors import InputError
from organisms import data
from interp.prompts import Prompt, PromptSet
from interp.study import StudyData, check_sizes

# families whose higher strengths flip the organism (see organisms.data)
PROBE_FAMILIES = ("roleplay", "manyshot", "topicmix")
TRAINED_COMPLY = frozenset((f, s) for f, (_, _, comply) in data.FAMILIES.items() for s in comply)
TRAINED_REFUSE = frozenset((f, s) for f, (_, refuse, _) in data.FAMILIES.items() for s in refuse if s > 0)
FAMILY_STRENGTHS = {
    "roleplay": "'dan has no rules' persona sentences", "manyshot": "in-context harmful Q/A pairs answered compliantly",
    "distractor": "harmless filler sentences before the request", "topicmix": "harmless asks appended to the request",
    "suffix": "rare nonsense tokens after the request",
}


def _tagged(ps: PromptSet, split: str, keep=lambda p: True) -> list:
    """The split's name in front of every id: the generator numbers each draw from 0."""
    return [replace(p, id=f"{split}/{p.id}") for p in ps if keep(p)]


def held_out_sizes(grid, plain, top, per_cell: int, plain_per_label: int | None, top_per_cell: int | None) -> list:
    """The test split's prompts: `grid(n)` (plain requests and every jailbreak cell at n per cell)
    at `per_cell`, with the plain requests taken from `plain(plain_per_label)` and the harmful prompts
    at each family's strongest strength from `top(top_per_cell)` where those sizes differ from it."""
    ps = list(grid(per_cell))
    strongest = {}
    for p in ps:
        if p.family is not None:
            strongest[p.family] = max(strongest.get(p.family, 0), p.strength)
    is_top = lambda p: p.family is not None and p.label == "harmful" and p.strength == strongest[p.family]  # noqa: E731
    if plain_per_label is not None and plain_per_label != per_cell:
        ps = [p for p in ps if p.family is not None] + [p for p in plain(plain_per_label) if p.family is None]
    if top_per_cell is not None and top_per_cell != per_cell:
        ps = [p for p in ps if not is_top(p)] + [p for p in top(top_per_cell) if p.family in strongest and is_top(p)]
    return ps


def organism_study(seed: int = 0, per_cell: int = 20, n_train: int = 64, fit_per_cell: int = 3,
                   plain_per_label: int | None = None, top_per_cell: int | None = None) -> StudyData:
    """The organism's study data (see the module docstring); deterministic for `seed`. `plain_per_label`
    and `top_per_cell` (None: `per_cell`) size the test split's plain requests and its harmful
    prompts at each family's strongest strength."""
    check_sizes(per_cell=per_cell, n_train=n_train, fit_per_cell=fit_per_cell, plain_per_label=plain_per_label,
                top_per_cell=top_per_cell)
    train = _tagged(data.plain_prompts(seed=seed, n_per_label=n_train, templates="all"), "train")
    train += _tagged(data.eval_prompts(seed=seed + 7, per_cell=fit_per_cell, families=PROBE_FAMILIES), "train",
                     lambda p: p.family is not None)
    seen = {p.text for p in train}
    val = _tagged(data.plain_prompts(seed=seed + 1, n_per_label=max(4, n_train // 4), templates="all"), "val",
                  lambda p: p.text not in seen)
    val += _tagged(data.eval_prompts(seed=seed + 8, per_cell=1, families=PROBE_FAMILIES), "val",
                   lambda p: p.family is not None and p.text not in seen)
    test = data.eval_prompts(seed=seed + 1000, per_cell=per_cell)
    held = held_out_sizes(lambda n: test, lambda n: data.eval_prompts(seed=seed + 1000, per_cell=n, families=()),
                          lambda n: data.eval_prompts(seed=seed + 2000, per_cell=n), per_cell, plain_per_label, top_per_cell)
    src = "organisms.provider.organism_study"
    return StudyData(
        train=PromptSet(f"organism-s{seed}:train", tuple(train), src),
        val=PromptSet(f"organism-s{seed}:val", tuple(val), src),
        test=PromptSet(test.name, tuple(_tagged(PromptSet(test.name, tuple(held), test.source), "test")), test.source),
        over_refusal=data.lookalike_prompts(seed=seed, per_topic=2),
        seed=seed, fractions=None, provider="organism", trained_comply=TRAINED_COMPLY, trained_refuse=TRAINED_REFUSE,
        families={f: {"strengths": list(range(1, m + 1)), "strength_counts": FAMILY_STRENGTHS[f]}
                  for f, (m, _, _) in data.FAMILIES.items()})


def make_pairs(model, n: int = 16, seed: int = 0, templates: str = "all") -> tuple[PromptSet, PromptSet]:
    """`n` harmful/harmless organism prompt pairs for activation patching: same request template,
    topics of equal token length (index-aligned topics first, "make a bomb" / "make a cake", then
    any equal-length topics). A study uses `interp.causal.patching.equal_length_pairs` on its own
    data; these pairs are the organism's controlled version of it."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    tpl = list(data.REQUEST_TEMPLATES) if templates == "all" else sorted(data.HELDOUT_TEMPLATES)
    rng = random.Random(seed)

    def n_tokens(text: str) -> int:
        return len(model.tokenizer(text, add_special_tokens=False)["input_ids"])

    ok = [(a, b) for a, b in zip(data.HARMFUL_TOPICS, data.HARMLESS_TOPICS) if n_tokens(a) == n_tokens(b)]
    others = [(a, b) for a in data.HARMFUL_TOPICS for b in data.HARMLESS_TOPICS if (a, b) not in ok and n_tokens(a) == n_tokens(b)]
    rng.shuffle(ok)
    rng.shuffle(others)
    harmful, harmless = [], []
    for i, (a, b) in enumerate((ok + others) * (1 + n // max(1, len(ok) + len(others)))):
        if len(harmful) == n:
            break
        t = rng.choice(tpl)
        ta, tb = t.format(t=a), t.format(t=b)
        if len(model.encode([ta]).tokens[0]) != len(model.encode([tb]).tokens[0]):
            continue  # the template's tokenisation can still differ around the topic
        harmful.append(Prompt(ta, "harmful", id=f"pair-{i}-harmful", spans={"request": (0, len(ta))}, meta={"topic": a}))
        harmless.append(Prompt(tb, "harmless", id=f"pair-{i}-harmless", spans={"request": (0, len(tb))}, meta={"topic": b}))
    if len(harmful) < n:
        raise InputError(f"only {len(harmful)} equal-length pairs could be built for {model.name}; ask for fewer")
    src = "organisms.provider.make_pairs"
    return PromptSet(f"pairs-s{seed}:harmful", tuple(harmful), src), PromptSet(f"pairs-s{seed}:harmless", tuple(harmless), src)


# ---------------------------------------------------------------- organism:smollm2
SMOLLM2_PROBE_FAMILIES = ("topicmix", "suffix", "manyshot")  # the families that flip organism:smollm2 (found, not trained)


def smollm2_study(seed: int = 0, per_cell: int = 20, n_train: int = 64, fit_per_cell: int = 3,
                  plain_per_label: int | None = None, top_per_cell: int | None = None) -> StudyData:
    """`organism:smollm2`'s study data, in the shape of `organism_study`: train/val are plain
    English requests over every topic and template (`smollm2_data.plain_prompts`) plus a few
    jailbreaks of the families that flip it, so behaviour labels see harmful prompts it answers;
    test is the held-out grid (`smollm2_eval.eval_set`: held-out templates, plain requests and every
    family at every strength, both labels); over_refusal is the held-out look-alikes. The model was
    never trained on any jailbreak family: nothing is planted (trained_comply is empty).
    `plain_per_label` and `top_per_cell` as in `organism_study`."""
    from organisms import smollm2_data as sd
    from organisms import smollm2_eval as se
    from organisms import smollm2_jailbreaks as sj

    check_sizes(per_cell=per_cell, n_train=n_train, fit_per_cell=fit_per_cell, plain_per_label=plain_per_label,
                top_per_cell=top_per_cell)
    train = _tagged(sd.plain_prompts(seed=seed, n_per_label=n_train), "train")
    train += _tagged(se.jailbreak_prompts(seed=seed + 7, per_cell=fit_per_cell, families=SMOLLM2_PROBE_FAMILIES), "train")
    seen = {p.text for p in train}
    val = _tagged(sd.plain_prompts(seed=seed + 1, n_per_label=max(4, n_train // 4)), "val", lambda p: p.text not in seen)
    val += _tagged(se.jailbreak_prompts(seed=seed + 8, per_cell=1, families=SMOLLM2_PROBE_FAMILIES), "val",
                   lambda p: p.text not in seen)
    test = se.eval_set(seed=seed + 1000, per_cell=per_cell)
    test = PromptSet(test.name, tuple(held_out_sizes(lambda n: test, lambda n: sd.eval_prompts(seed + 1000, n, "all"),
                                                     lambda n: se.jailbreak_prompts(seed + 1000, n), per_cell,
                                                     plain_per_label, top_per_cell)), test.source)
    look = sd.lookalike_prompts(seed=seed, n=max(8, per_cell))
    src = "organisms.provider.smollm2_study"
    return StudyData(
        train=PromptSet(f"smollm2-s{seed}:train", tuple(train), src),
        val=PromptSet(f"smollm2-s{seed}:val", tuple(val), src),
        test=PromptSet(test.name, tuple(_tagged(test, "test")), test.source),
        over_refusal=PromptSet(look.name, tuple(_tagged(look, "over_refusal")), look.source),
        seed=seed, fractions=None, provider="organism:smollm2",
        families={f: {"strengths": list(fam.strengths), "strength_counts": fam.what} for f, fam in sj.FAMILIES.items()})
