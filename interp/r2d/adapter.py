"""An R2D adapter directory (what `safety-heads r2d train --out DIR` writes) and loading it.

DIR holds `adapter.safetensors` (LoRA A/B, `interp.lora`), `pivots.safetensors` (the pivot tokens'
embedding rows, and unembedding rows when the model does not tie them) and `recipe.json` (the base
model, its fingerprint, the pivot ids, the training configuration, data hashes and library
versions). `load_r2d_hf(DIR)` rebuilds the model: the base, checked against the recipe's
fingerprint, plus the pivot tokens and rows, plus the adapter merged in (`--model r2d:DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp import lora
from interp.errors import InputError, ModelLoadError
from interp.r2d import pivots

ADAPTER_FILE, PIVOTS_FILE, RECIPE_FILE = "adapter.safetensors", "pivots.safetensors", "recipe.json"
KIND = "r2d"
PREFIX = "r2d:"


def load_base_hf(name: str, attn: str = "eager"):
    """(plain Hugging Face causal LM in float32, its tokenizer, its directory) for a model name or
    directory, as `load_model` finds it (a registered source's model, a hub registry name, a local
    directory). `attn`: the attention implementation (eager, for the bridge's attention hooks; training
    uses sdpa, which is faster and computes the same function)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.model import resolve_model_dir
    from interp.sources import resolve_model

    claimed = resolve_model(name)
    if claimed is not None and claimed[1].hf_model is not None:
        res = claimed[1]
        tok = res.tokenizer or AutoTokenizer.from_pretrained(res.path, local_files_only=res.local)
        return res.hf_model.float().eval(), tok, res.path
    path, local = (claimed[1].path, claimed[1].local) if claimed is not None else resolve_model_dir(name)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn,
                                                 local_files_only=local)
    return model.eval(), tok, path


def base_fingerprint(model) -> str:
    """sha256 (16 hex digits) of every tensor of the model's state dict: the base an adapter fits."""
    return lora.fingerprint(dict(model.state_dict()))


def base_name(name: str) -> str:
    """What the recipe records as the base: an existing directory as its absolute path, else the name."""
    p = Path(name).expanduser()
    return str(p.resolve()) if p.is_dir() else name


def adapter_dir(name: str) -> Path | None:
    """The directory of an `r2d:DIR` name (None for any other name); its files are checked."""
    if not name.startswith(PREFIX):
        return None
    d = Path(name[len(PREFIX):]).expanduser()
    missing = [f for f in (RECIPE_FILE, ADAPTER_FILE, PIVOTS_FILE) if not (d / f).is_file()]
    if missing:
        raise InputError(f"--model {name}: {d} lacks {', '.join(missing)}; pass a directory written by "
                         "safety-heads r2d train --out DIR")
    return d


def read_recipe(d: Path) -> dict:
    try:
        recipe = json.loads((d / RECIPE_FILE).read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{d / RECIPE_FILE} is not valid JSON ({e.msg}); retrain with safety-heads r2d train") from None
    if recipe.get("kind") != KIND or "base" not in recipe or "fingerprints" not in recipe:
        raise InputError(f"{d / RECIPE_FILE} is not an R2D recipe (needs kind 'r2d', base and fingerprints); "
                         "retrain with safety-heads r2d train")
    return recipe


def load_r2d_hf(d: str | Path):
    """(merged model, tokenizer with the pivots, recipe, base directory) from an R2D adapter directory. A base model
    whose weights differ from the recipe's fingerprint is refused (InputError)."""
    from safetensors.torch import load_file

    d = Path(d)
    recipe = read_recipe(d)
    model, tok, path = load_base_hf(recipe["base"])
    fp = base_fingerprint(model)
    want = recipe["fingerprints"].get("base")
    if fp != want:
        raise InputError(f"r2d:{d} was trained on a base model with fingerprint {want}, but {recipe['base']!r} now loads "
                         f"as {fp}: pass the base it was trained on, or retrain with safety-heads r2d train")
    ids = pivots.add_pivot_tokens(tok)
    if ids != recipe["pivot_ids"]:
        raise ModelLoadError(f"the pivots got ids {ids} in this tokenizer, the recipe in {d} says {recipe['pivot_ids']}; "
                             "the base tokenizer changed: retrain with safety-heads r2d train")
    pivots.set_pivot_rows(model, [ids[p] for p in recipe["pivot_order"]], load_file(str(d / PIVOTS_FILE)))
    tensors = load_file(str(d / ADAPTER_FILE))
    if lora.fingerprint(tensors) != recipe["fingerprints"].get("adapter"):
        raise ModelLoadError(f"{d / ADAPTER_FILE} differs from the adapter the recipe records (fingerprint mismatch): "
                             "it was changed after training; retrain with safety-heads r2d train")
    lora.merge_into(model, tensors, recipe["config"]["lora"]["alpha"] / recipe["config"]["lora"]["rank"])
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    return model.eval(), tok, recipe, path


def model_meta(recipe: dict) -> dict:
    """The loaded model's metadata (`ChatModel.meta`): kind 'r2d', how to read its answers, its base."""
    return {"kind": KIND, "variant": "r2d-adapter", "base_model": recipe["base"],
            "pivots": {"safe": "[SAFE]", "unsafe": "[UNSAFE]", "rethink": "[RETHINK]"},
            "response_prefix": recipe.get("response_prefix", "Step:"),
            "judge": "decision = last pivot ([UNSAFE] refuses); the judge reads the text after the last pivot",
            **{k: recipe[k] for k in ("refusal_phrases", "compliance_phrases") if recipe.get(k)},
            "jailbreak_rows": recipe.get("data", {}).get("wrapped"),  # wrapped rows the teacher saw
            # their families ({family: rows}; absent in recipes older than the field)
            "wrapped_families": recipe.get("data", {}).get("wrapped_families"),
            "recipe": {k: recipe[k] for k in ("seed", "cpo_weight", "fingerprints") if k in recipe}}
