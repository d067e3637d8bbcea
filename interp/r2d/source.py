"""`--model r2d:DIR`: an R2D adapter directory (`safety-heads r2d train --out DIR`) as a model
source (`interp.sources`). Its base is loaded and checked against the recipe's fingerprint, the
pivot tokens and rows are added and the adapter merged in (`interp.r2d.adapter.load_r2d_hf`).
Registering is all this module does on import (the `interp` package imports it)."""

from __future__ import annotations

from interp.sources import ResolvedModel, register_model_source


def resolve_r2d(name: str) -> ResolvedModel | None:
    from interp.r2d import adapter

    d = adapter.adapter_dir(name)
    if d is None:
        return None
    model, tok, recipe, path = adapter.load_r2d_hf(d)
    return ResolvedModel(str(path), name, hf_model=model, tokenizer=tok, meta=adapter.model_meta(recipe))


def check_r2d(name: str) -> bool:
    """An `r2d:DIR` name whose directory holds the adapter's files (no weights read)."""
    from interp.r2d import adapter

    return adapter.adapter_dir(name) is not None


register_model_source("r2d", resolve_r2d, check=check_r2d)
