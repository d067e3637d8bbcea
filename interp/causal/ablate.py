"""Head ablation: remove what chosen heads write. This module holds the reference values; the
ablation is one `interp.intervention.Intervention.ablate_heads(heads, method, reference)`.

Three ways to remove a head's output (`hook_z`, the input of the attention output projection):

* ``zero``: replace it by zeros. Simple, but zero is not a value the head ever takes, so later
  layers see an input off their training distribution.
* ``mean`` (default): replace it by its mean over a reference prompt set. The mean is taken at the
  **last prompt token** (the position the refusal decision is read from; ``positions="last"``) or
  over every token of every reference prompt (``positions="all"``), and applied at **every
  position** of the ablated run. A single value per head keeps the hook position-free, so the
  ablation holds during generation with the KV cache, where later steps see one position.
* ``resample``: replace it by the same head's output on another prompt of the reference set
  (per batch row, drawn by a seeded permutation; same position choice as the mean).

Measuring behaviour under many ablations at once is `interp.causal.runner`; the search for the
heads that flip behaviour is `interp.causal.search`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import SpanMean, capture
from interp.errors import InputError
from interp.model import ChatModel, texts
from interp.prompts import PromptSet

METHODS = ("zero", "mean", "resample")
REF_POSITIONS = ("last", "all")


@dataclass(frozen=True)
class HeadReference:
    """Every head's output on each reference prompt: the values mean- and resample-ablation use."""

    z: Float[Tensor, "prompt layer head d_head"]
    positions: str  # "last": at the last prompt token; "all": mean over each prompt's tokens
    source: dict = field(default_factory=dict)  # the reference set's describe()

    @property
    def mean(self) -> Float[Tensor, "layer head d_head"]:
        return self.z.mean(0)

    def describe(self) -> dict:
        return {"positions": self.positions, "n": int(self.z.shape[0]), **({"set": self.source} if self.source else {})}


@torch.no_grad()
def head_reference(model: ChatModel, prompts, positions: str = "last", batch_size: int = 64) -> HeadReference:
    """Capture every head's `hook_z` on a reference set (at the last token, or averaged over tokens)."""
    if positions not in REF_POSITIONS:
        raise InputError(f"reference positions must be one of {REF_POSITIONS}, got {positions!r}")
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("the reference set is empty: mean and resample ablation need at least one reference prompt "
                         "(pass balanced harmful + harmless prompts, e.g. a study's train split, or use method='zero')")
    source = prompts.describe() if isinstance(prompts, PromptSet) else {"n": len(prompt_texts)}
    if positions == "last":
        z = capture(model, prompt_texts, sites="z", positions="last", batch_size=batch_size).stack_heads()
        return HeadReference(z, positions, source)
    # the mean over each prompt's real tokens (never padding), batched in the caller's order
    acts = capture(model, prompt_texts, sites="z", batch_size=batch_size, reducer=SpanMean(), sort=False)
    z = torch.stack([acts[("z", l)] for l in range(model.n_layers)], dim=1)
    return HeadReference(z, positions, source)


def resolve_reference(model: ChatModel, method: str, reference, positions: str = "last") -> HeadReference | None:
    if method not in METHODS:
        raise InputError(f"unknown ablation method {method!r}; choose one of {METHODS}")
    if method == "zero":
        return None
    if reference is None:
        raise InputError(f"{method}-ablation replaces a head's output by its {'mean' if method == 'mean' else 'value'} "
                         "over a reference set: pass reference= (balanced harmful + harmless prompts, e.g. the study's "
                         "train split, so the mean carries no label; or a HeadReference), or use method='zero'")
    if isinstance(reference, HeadReference):
        want = (model.n_layers, model.n_heads, model.d_head)
        if reference.z.ndim != 4 or tuple(reference.z.shape[1:]) != want:
            raise InputError(f"reference activations have shape {tuple(reference.z.shape)}, expected [n, {want[0]}, "
                             f"{want[1]}, {want[2]}] for {model.name}; were they captured on another model?")
        if reference.z.shape[0] == 0:
            raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
        return reference
    return head_reference(model, reference, positions)
