"""The user's prompt files as a study's data: the pieces of `interp.study.files_study` (caps on
the data, each said on stderr and recorded; the jailbreak families built from the files)."""

from __future__ import annotations

import random
import sys
from dataclasses import replace

from interp.prompts import LABELS, Prompt, PromptSet


def cap_cells(prompts: PromptSet, per_cell: int, seed: int) -> tuple[PromptSet, int]:
    """At most `per_cell` jailbreak prompts per (label, family, strength) cell (plain ones all
    kept), and how many prompts the cap left out."""
    cells: dict[tuple, list[Prompt]] = {}
    keep = []
    for p in prompts:
        if p.family is None:
            keep.append(p)
        else:
            cells.setdefault((p.label, p.family, p.strength), []).append(p)
    for key in sorted(cells, key=str):
        group = cells[key]
        keep += group if len(group) <= per_cell else random.Random(f"{seed}/cap/{key}").sample(group, per_cell)
    return PromptSet(prompts.name, tuple(keep), prompts.source), len(prompts) - len(keep)


def with_role_ids(ps: PromptSet, role: str) -> PromptSet:
    """Prefix ids with the file's role: two files may both number their rows from 0."""
    return PromptSet(ps.name, tuple(replace(p, id=f"{role}/{p.id}") for p in ps), ps.source)


def say(line: str) -> None:
    print(f"safety-heads: {line}", file=sys.stderr, flush=True)


def has_category(path) -> bool:
    """Whether a prompt file carries categories --category can select (read once more: small files)."""
    from interp.datasets import load_prompt_file

    return any(k.lower() in ("category", "functionalcategory", "semanticcategory")
               for p in load_prompt_file(path, fallback_label="harmful") for k in p.meta)


def built_jailbreaks(model, plain: dict, families, strengths, seed: int, per_cell: int, fit_per_cell: int,
                     notes: list) -> dict:
    """The jailbreak families applied to each split's own requests (see `files_study`), said on
    stderr with the number of prompts; `"_families"` holds their description."""
    from interp.jailbreaks import Pools, build_jailbreaks, describe_families, select_families, usable_families
    from interp.vocab import vocabulary_words

    if families is not None and len(families) == 0:
        return {**{s: PromptSet(f"jailbreaks:{s}", (), "interp.jailbreaks") for s in plain}, "_families": {}}
    chosen = families if families and not isinstance(next(iter(families)), str) else select_families(families, strengths)
    train_plain = plain["train"]
    pools = Pools(tuple(train_plain.filter(label="harmful").texts), tuple(train_plain.filter(label="harmless").texts),
                  model.compliance_phrases[0], tuple(vocabulary_words(model)))
    fams, skipped = usable_families(model, pools, chosen)
    notes += [f"jailbreak family {k} not built: {v}" for k, v in skipped.items()]
    jb: dict = {}
    for s in plain:  # harmful requests wrapped, and harmless ones as the over-refusal control
        n = per_cell if s == "test" else fit_per_cell
        parts = [build_jailbreaks(plain[s].filter(label=lab), pools, fams, n, seed, name=f"jailbreaks:{s}:{lab}")
                 for lab in LABELS]
        jb[s] = parts[0].concat(parts[1], name=f"jailbreaks:{s}")
    total = sum(len(v) for v in jb.values())
    say(f"built {total} jailbreak prompts from the prompt files: {len(fams)} families "
        f"({', '.join(f'{f.name} {list(f.strengths)}' for f in fams)}) for the train/val/test splits"
        + (f"; not built: {', '.join(skipped)}" if skipped else "") + ". Choose with --families / --strengths, "
        "or pass --jailbreak FILE")
    jb["_families"] = describe_families(fams)
    return jb
