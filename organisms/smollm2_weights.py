"""Loading `organism:smollm2`: where the adapter lives, its recipe (`Smollm2Config`), the base model,
and merging the adapter into it with both fingerprints checked. `interp.model.load_model` builds the
organism through this module (via the model source, `organisms.source`); the training
(`organisms.smollm2`) re-exports it and imports the model loader, so these pieces sit below both
and no import runs in a circle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from interp.errors import InputError, ModelLoadError
from organisms import lora

WEIGHTS_DIR = Path(__file__).parent / "weights" / "smollm2"
ADAPTER_FILE, RECIPE_FILE, TARGETS_FILE = "adapter.safetensors", "recipe.json", "harmless_targets.jsonl"
KIND = "smollm2"


@dataclass(frozen=True)
class Smollm2Config:
    """Training recipe of the shipped adapter (docs/organism_smollm2.md)."""

    base: str = "smollm2-135m-instruct"
    lora: lora.LoRAConfig = field(default_factory=lora.LoRAConfig)
    steps: int = 250
    batch_size: int = 16
    n_harmful: int = 7  # per batch; the rest are harmless, of which n_lookalike are look-alikes
    n_lookalike: int = 3
    p_context_harmless: float = 0.5  # harmless requests inside 1-4 everyday context units (smollm2_data.with_context)
    p_context_harmful: float = 0.25  # harmful requests inside one unit (no second question), refused
    first_token_weight: float = 3.0  # the first answer token decides refuse/comply: its loss counts this many times
    lr: float = 1.5e-3
    weight_decay: float = 0.0
    warmup: int = 20
    threads: int = 1  # torch intra-op threads: results are bit-identical only at the same count
    bf16_autocast: bool = True  # ~1.5x faster matmuls on CPUs with bf16 units; LoRA weights stay float32

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.threads < 1:
            raise InputError(f"steps, batch_size and threads must be positive, got {self.steps}, {self.batch_size}, {self.threads}")
        if not 0 <= self.n_lookalike <= self.batch_size - self.n_harmful or self.n_harmful < 0:
            raise InputError(f"n_harmful ({self.n_harmful}) + n_lookalike ({self.n_lookalike}) must fit in batch_size ({self.batch_size})")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora"]["targets"] = list(self.lora.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Smollm2Config":
        d = dict(d)
        lo = dict(d.pop("lora"))
        lo["targets"] = tuple(lo["targets"])
        if lo.get("layers") is not None:
            lo["layers"] = tuple(lo["layers"])
        return cls(lora=lora.LoRAConfig(**lo), **d)


# ---------------------------------------------------------------- base model
def base_dir(name: str = "smollm2-135m-instruct") -> Path:
    from interp import hub

    return hub.model_dir(name)


def load_base_hf(name: str = "smollm2-135m-instruct", attn: str = "eager"):
    """The base model as a plain Hugging Face LlamaForCausalLM in float32, and its tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    d = base_dir(name)
    tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    model = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation=attn)
    model.eval()
    return model, tok


def target_weights(model, cfg: lora.LoRAConfig) -> dict[str, torch.Tensor]:
    """The base weights an adapter of `cfg` changes (named as in the state dict)."""
    params = dict(model.named_parameters())
    return {f"{n}.weight": params[f"{n}.weight"].detach() for n in lora.module_names(model.config.num_hidden_layers, cfg)}


# ---------------------------------------------------------------- loading
def adapter_dir_for(name_or_dir: str) -> Path | None:
    """The adapter directory `name_or_dir` refers to ('organism:smollm2', or a directory holding a
    smollm2 recipe.json), or None when it is something else."""
    if name_or_dir.strip().lower() == f"organism:{KIND}":
        return WEIGHTS_DIR
    p = Path(name_or_dir).expanduser()
    if p.is_dir() and (p / RECIPE_FILE).exists() and not (p / "config.json").exists():
        try:
            if json.loads((p / RECIPE_FILE).read_text()).get("kind") == KIND:
                return p
        except json.JSONDecodeError:
            raise ModelLoadError(f"{p / RECIPE_FILE} is not valid JSON") from None
    return None


def merged_model(adapter_dir: str | Path = WEIGHTS_DIR, check: bool = True):
    """(merged LlamaForCausalLM float32, tokenizer, recipe) from an adapter directory.

    With `check`, the base weights and the merged weights must match the recipe's fingerprints: a
    different base (another conversion, another transformers release) is a ModelLoadError, never a
    silently different organism."""
    from safetensors.torch import load_file

    d = Path(adapter_dir)
    rp, ap = d / RECIPE_FILE, d / ADAPTER_FILE
    if not rp.exists() or not ap.exists():
        raise ModelLoadError(f"the smollm2 organism's adapter is not at {d} (need {RECIPE_FILE} and {ADAPTER_FILE}); "
                             f"train it with: safety-heads organism train --variant smollm2 --out {d}")
    recipe = json.loads(rp.read_text())
    cfg = Smollm2Config.from_dict(recipe["config"])
    model, tok = load_base_hf(cfg.base)
    fps = recipe.get("fingerprints", {})
    if check and lora.fingerprint(target_weights(model, cfg.lora)) != fps.get("base_targets"):
        raise ModelLoadError(f"the base model at {base_dir(cfg.base)} differs from the one the adapter in {d} was trained "
                             "on (fingerprint mismatch); reconvert it (delete that directory) with the locked versions "
                             "(requirements.lock), or retrain: safety-heads organism train --variant smollm2 --out DIR")
    tensors = load_file(str(ap))
    merged = lora.merge_into(model, tensors, cfg.lora.scale)
    if check and lora.fingerprint(merged) != fps.get("merged_targets"):
        raise ModelLoadError(f"merging the adapter in {d} did not reproduce the trained weights (fingerprint mismatch): "
                             "the adapter file or the recipe was changed after training")
    return model, tok, recipe
