"""The organisms as model sources (`interp.sources`): what `load_model("organism")`,
`load_model("organism:smollm2")` and the `safety-heads organism` / `r2d` commands go through.

* `organism:smollm2`: SmolLM2-135M-Instruct with the shipped safety adapter merged in (or any
  adapter directory holding a smollm2 `recipe.json`); its study data is its own English sets.
* `organism:smollm2-r2d`: Reasoning-to-Defend trained on base SmolLM2-135M-Instruct from
  organism:smollm2's training requests (an `r2d:DIR` directory, `weights/smollm2-r2d`, built by
  `organisms.smollm2_r2d`); its study data is organism:smollm2's, its comparison model organism:smollm2.
* `organism`: the word-level toy organisms shipped in `weights/` (`organism` = `organism:gqa`,
  `organism:mha`, `organism:r2d`), by name or by their directory; its study data, the organism's
  generator, is also what a study without prompt files runs on for a model no source claims.

Registering is all this module does on import; the loaders import the heavy parts when called.
"""

from __future__ import annotations

import re
from pathlib import Path

from interp.errors import InputError, ModelLoadError
from interp.sources import ResolvedModel, register_model_source
from organisms import paths



# ---------------------------------------------------------------- the toy organisms
def variant_dir(variant: str) -> Path:
    """The shipped directory of an organism variant, checked to be built."""
    from interp.model import check_model_files

    if variant not in paths.ORGANISM_VARIANTS:
        raise ModelLoadError(f"unknown organism variant {variant!r}; choose one of {paths.ORGANISM_VARIANTS}")
    d = paths.ORGANISM_DIR / variant
    if not (d / "config.json").exists():
        raise ModelLoadError(f"organism variant {variant!r} is not built at {d}; "
                             f"train it with: safety-heads organism train --variant {variant} --out {d}")
    check_model_files(d)
    return d


def _shipped_variant(name_or_dir: str) -> str | None:
    """The variant whose shipped directory `name_or_dir` is (by path), else None."""
    p = Path(name_or_dir).expanduser()
    for variant in paths.ORGANISM_VARIANTS:
        d = paths.ORGANISM_DIR / variant
        try:
            if d.exists() and p.exists() and p.resolve() == d.resolve():
                return variant
        except OSError:
            pass
    return None


def resolve_organism(name_or_dir: str) -> ResolvedModel | None:
    m = re.fullmatch(r"organism(?::(\w+))?", name_or_dir)
    variant = (m.group(1) or "gqa") if m else _shipped_variant(name_or_dir)
    if variant is None:
        return None
    d = variant_dir(variant)
    return ResolvedModel(str(d if m else Path(name_or_dir).expanduser()), f"organism:{variant}")


def organism_data(model, cfg):
    from organisms.provider import organism_study

    return organism_study(seed=cfg.seed, per_cell=cfg.per_cell, n_train=cfg.n_train,
                          plain_per_label=cfg.plain_per_label, top_per_cell=cfg.top_per_cell)


def organism_commands(sub) -> None:
    from organisms import cli

    cli.register(sub)


# ---------------------------------------------------------------- organism:smollm2
def resolve_smollm2(name_or_dir: str) -> ResolvedModel | None:
    from organisms import smollm2_weights as smollm2

    adapter = smollm2.adapter_dir_for(name_or_dir)
    if adapter is None:
        return None
    hf_model, tok, recipe = smollm2.merged_model(adapter)  # the base model with its safety adapter merged in
    shipped = Path(adapter).resolve() == smollm2.WEIGHTS_DIR.resolve()
    return ResolvedModel(str(smollm2.base_dir(recipe["base"])), "organism:smollm2" if shipped else name_or_dir,
                         hf_model=hf_model, tokenizer=tok, meta=recipe)


def check_smollm2(name_or_dir: str) -> bool:
    """An adapter name or directory with its files present; no weights read."""
    from organisms import smollm2_weights as smollm2

    adapter = smollm2.adapter_dir_for(name_or_dir)
    if adapter is None:
        return False
    missing = [f for f in (smollm2.RECIPE_FILE, smollm2.ADAPTER_FILE) if not (Path(adapter) / f).exists()]
    if missing:
        raise InputError(f"--model {name_or_dir}: the adapter directory {adapter} lacks {', '.join(missing)}; retrain it "
                         f"with: safety-heads organism train --variant smollm2 --out {adapter}")
    return True


def smollm2_data(model, cfg):
    from organisms.provider import smollm2_study

    return smollm2_study(seed=cfg.seed, per_cell=cfg.per_cell, n_train=cfg.n_train, fit_per_cell=cfg.fit_per_cell,
                         plain_per_label=cfg.plain_per_label, top_per_cell=cfg.top_per_cell)


# ---------------------------------------------------------------- organism:smollm2-r2d
SMOLLM2_R2D = "organism:smollm2-r2d"
SMOLLM2_R2D_COMPARISON = "organism:smollm2"  # what the demo's r2d section measures it against


def smollm2_r2d_dir() -> Path:
    """The shipped adapter directory, checked to hold its files (InputError naming the build command)."""
    from interp.r2d import adapter

    d = paths.SMOLLM2_R2D_DIR
    missing = [f for f in (adapter.RECIPE_FILE, adapter.ADAPTER_FILE, adapter.PIVOTS_FILE) if not (d / f).is_file()]
    if missing:
        raise InputError(f"{SMOLLM2_R2D} is not built ({d} lacks {', '.join(missing)}); build it (about 30 min on 2 "
                         f"cores) with: {paths.SMOLLM2_R2D_BUILD}")
    return d


def resolve_smollm2_r2d(name_or_dir: str) -> ResolvedModel | None:
    if name_or_dir.strip().lower() != SMOLLM2_R2D:
        return None
    from interp.r2d import adapter

    hf_model, tok, recipe, path = adapter.load_r2d_hf(smollm2_r2d_dir())
    meta = {**adapter.model_meta(recipe), "variant": "smollm2-r2d", "comparison": SMOLLM2_R2D_COMPARISON}
    return ResolvedModel(str(path), SMOLLM2_R2D, hf_model=hf_model, tokenizer=tok, meta=meta)


def check_smollm2_r2d(name_or_dir: str) -> bool:
    """The organism's name, its files present (no weights read); absent files are an InputError."""
    if name_or_dir.strip().lower() != SMOLLM2_R2D:
        return False
    smollm2_r2d_dir()
    return True


# organism:smollm2 and organism:smollm2-r2d first: "organism:<variant>" names are the toy's otherwise
register_model_source(SMOLLM2_R2D, resolve_smollm2_r2d, check=check_smollm2_r2d, study_data=smollm2_data,
                      data_fix="organism:smollm2's own prompts should always fit its vocabulary; report this as a bug.")
register_model_source("organism:smollm2", resolve_smollm2, check=check_smollm2, study_data=smollm2_data,
                      data_fix="organism:smollm2's own prompts should always fit its vocabulary; report this as a bug.")
register_model_source("organism", resolve_organism, study_data=organism_data, commands=organism_commands, data_fix=(
    "Without --harmful/--harmless the study runs on the embedded organism's prompts; for another model pass "
    "--harmful FILE --harmless FILE (e.g. AdvBench-format CSVs with a goal column) written for its vocabulary."))
