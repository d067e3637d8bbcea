"""Every argument and input file of a command line, checked before anything loads a model.

`check_args(args)` runs once in `interp.cli.main`, between parsing and the command. The rules are
keyed on argument names (`--per-cell`, `--prompts`, `--device`, ...), not on commands, so an option
a command adds later is checked as soon as its name is in one of the tables below. A mistake costs
a second and one clear line, never a model load or a finished section followed by a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from interp.errors import InputError
from interp.study import MIN_SIZES

# name -> smallest allowed value
MIN_INT = {**MIN_SIZES, "shard_size": 1, "k": 1, "top": 0, "k_folds": 2, "steps": 1, "batch_size": 1,
           "max_new_tokens": 1, "n_null": 1, "control_per_cell": 1, "attack_prompts": 1,
           "per_label": 1, "n_lookalike": 1, "max_per_label": 1, "min_words": 0}
OPEN_UNIT_INTERVAL = {"val_fraction"}  # strictly between 0 and 1
POSITIVE_FLOAT = {"C", "temperature"}
NON_NEGATIVE_FLOAT = {"cpo_weight"}
# arguments that always name an input file
INPUT_FILES = {"prompts", "harmful", "harmless", "jailbreak", "jailbreaks", "lookalike", "lookalikes", "over_refusal",
               "train_prompts", "eval_prompts"}
# arguments naming a saved artifact: a .pt file, or NAME(.json|.safetensors) whose pair must exist
ARTIFACT_ARGS = {"direction"}
# arguments that name an input file when their value looks like one (else they hold a value, e.g. a phrase list)
MAYBE_FILES = {"phrases", "refusal_phrases", "compliance_phrases", "labels", "label_file"}
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".parquet", ".yaml", ".yml")
MODEL_ARGS = {"model", "base", "sft_only"}
OUTPUT_DIRS = {"out", "work_dir"}


def check_args(args: argparse.Namespace) -> None:
    """Raise `InputError` for the first argument that is wrong, naming it and what to pass."""
    values = vars(args)
    for name, value in values.items():
        if value is None or name in ("func",):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{flag} must be a finite number, got {value}")
        if name in MIN_INT:
            _check_int(flag, value, MIN_INT[name])
        elif name in OPEN_UNIT_INTERVAL and not 0.0 < float(value) < 1.0:
            raise InputError(f"{flag} must be strictly between 0 and 1, got {value}")
        elif name in POSITIVE_FLOAT and not float(value) > 0:
            raise InputError(f"{flag} must be positive, got {value}")
        elif name in NON_NEGATIVE_FLOAT and not float(value) >= 0:
            raise InputError(f"{flag} must be 0 or more, got {value}")
        if name in INPUT_FILES or name.endswith("_file") or (name in MAYBE_FILES and _looks_like_file(value)):
            _check_input_file(flag, value)
        if name in ARTIFACT_ARGS and isinstance(value, str):
            _check_artifact(flag, value)
        if name == "intervention" and isinstance(value, list):
            from interp.saved import check_condition_dir

            for v in value:
                check_condition_dir(flag, v)
        if name in MODEL_ARGS and isinstance(value, str):
            _check_model(value)
        if name in OUTPUT_DIRS and isinstance(value, str) and Path(value).exists() and not Path(value).is_dir():
            raise InputError(f"{flag} {value} is an existing file; pass a directory")
    _check_model_options(values)
    if any(values.get(k) is not None for k in ("device_map", "max_memory", "offload_folder")):
        from interp.placement import Placement

        Placement.from_args(values.get("device_map"), values.get("max_memory"), values.get("offload_folder"))
    if isinstance(values.get("positions"), str):
        from interp.capture import parse_positions

        parse_positions(values["positions"])
    if isinstance(values.get("sites"), str):
        _check_sites(values["sites"])
    if isinstance(values.get("strengths"), tuple) and (not values["strengths"] or min(values["strengths"]) < 1):
        raise InputError(f"--strengths takes whole numbers of at least 1, e.g. 1,2,4; got {list(values['strengths'])}")
    if isinstance(values.get("sections"), str):
        _check_sections(values["sections"])


def _check_int(flag: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{flag} must be an integer of at least {least}, got {value!r}")


def _looks_like_file(value) -> bool:
    return isinstance(value, str) and (os.sep in value or value.lower().endswith(FILE_SUFFIXES))


def _check_input_file(flag: str, value) -> None:
    for v in value if isinstance(value, (list, tuple)) else [value]:
        p = Path(str(v)).expanduser()
        if not p.exists():
            raise InputError(f"{flag}: file {v} does not exist; check the path")
        if p.is_dir():
            from interp.dataset_readers import is_saved_dataset

            if is_saved_dataset(p):  # a Hugging Face dataset saved with save_to_disk is read as a file
                continue
            raise InputError(f"{flag}: {v} is a directory; pass a file (or a dataset directory written by "
                             "datasets' save_to_disk)")
        if not os.access(p, os.R_OK):
            raise InputError(f"{flag}: file {v} is not readable (permissions)")


def _check_artifact(flag: str, value: str) -> None:
    p = Path(value).expanduser()
    if p.suffix == ".pt" or p.is_file() and p.suffix not in (".json", ".safetensors"):
        _check_input_file(flag, value)
        return
    base = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    missing = [str(f) for f in (base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors"))
               if not f.exists()]
    if missing:
        raise InputError(f"{flag} {value}: {', '.join(missing)} not found; pass a saved artifact (NAME.json beside "
                         "NAME.safetensors) or a direction.pt")


def _check_model(value: str) -> None:
    """The model directory's files (config.json, weights) without loading anything; hub registry
    names are left to the loader, a name a model source claims to that source's check."""
    from interp import hub
    from interp.model import resolve_model_dir
    from interp.sources import claiming_source

    if claiming_source(value) is not None:  # an organism (or another registered source) checked its own files
        return
    if hub.canonical(value) is None:  # a registry model converts on first use: not here
        resolve_model_dir(value)


def _check_model_options(values: dict) -> None:
    from interp.model import check_device, read_chat_template

    if values.get("device") is not None:
        check_device(values["device"])
    if values.get("chat_template") is not None:
        read_chat_template(values["chat_template"])  # the template's rendering is checked before the weights load


def _check_sites(sites: str) -> None:
    from interp.capture import SITE_HOOKS

    names = [s.strip() for s in sites.split(",")]
    bad = [s for s in names if s not in SITE_HOOKS]
    if bad or not names:
        raise InputError(f"--sites: unknown site kind(s) {bad}; choose from {sorted(SITE_HOOKS)}")


def _check_sections(sections: str) -> None:
    from interp.pipeline import check_sections

    check_sections([s.strip() for s in sections.split(",")])
