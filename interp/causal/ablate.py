"""Head ablation: remove what chosen heads write. This module holds the reference values; the
ablation is one `interp.intervention.Intervention.ablate_heads(heads, method, reference)`.

Three ways to remove a head's output (`hook_z`, the input of the attention output projection):

* ``zero``: replace it by zeros. Simple, but zero is not a value the head ever takes, so later
  layers see an input off their training distribution.
* ``mean`` (default): replace it by its mean over a reference prompt set, **per position**
  (``positions="position"``, the default): positions are counted from the end of each forward
  pass (the last `window` positions are the chat template's tokens after the request and the end
  of the request; they line up across prompts), and each gets the reference prompts' mean at the
  same offset; positions before the window get the mean over the reference prompts' earlier
  tokens. Under the KV cache each generated token is the last position of its pass, so it takes
  the last position's value. The older position-free choices remain: the mean at the **last
  prompt token** applied at every position (``positions="last"``) or over every token
  (``positions="all"``). A last-token value at every position is off-distribution for a head
  whose output differs by position (an early head): it damages the model in general.
* ``resample``: replace it by the same head's output on another prompt of the reference set at
  the same position (per batch row, drawn by a seeded permutation; same position choice as the
  mean).

Measuring behaviour under many ablations at once is `interp.causal.runner`; the search for the
heads that flip behaviour is `interp.causal.search`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import Reducer, SpanMean, capture
from interp.errors import InputError
from interp.intervention.heads import slot_index
from interp.model import ChatModel, texts
from interp.prompts import PromptSet

METHODS = ("zero", "mean", "resample")
REF_POSITIONS = ("position", "last", "all")
WINDOW = 8  # positions counted from the end that get a value of their own (ChatML's suffix is 5 tokens)


def position_slots(x: Tensor, mask: Tensor, window: int, mean: bool = True) -> Tensor:
    """[batch, pos, ...] (left padded, `mask` [batch, pos] 1 on real tokens) -> [batch, window + 1, ...]:
    the value at each of the last `window` offsets, and the mean (or sum, `mean=False`) over the real
    tokens before them. A prompt shorter than the window: offsets past its start take, like its
    earlier-tokens slot, the mean over all its real tokens (sums stay sums over what exists)."""
    B, P = x.shape[:2]
    shape = (B, P, *([1] * (x.ndim - 2)))
    m = mask.to(x.device, x.dtype).view(shape)
    rest = (slot_index(P, window).to(x.device) == window).to(x.dtype).view(1, *shape[1:]) * m
    total = (x * rest).sum(1)
    inside = [x[:, P - 1 - k] * m[:, P - 1 - k] if k < P else torch.zeros_like(x[:, 0]) for k in range(window)]
    if not mean:
        return torch.stack(inside + [total], 1)
    n_rest = rest.sum(1)
    everything = (x * m).sum(1) / m.sum(1).clamp(min=1)
    rest_mean = torch.where(n_rest > 0, total / n_rest.clamp(min=1), everything)
    real = [m[:, P - 1 - k] > 0 if k < P else torch.zeros_like(m[:, 0], dtype=torch.bool) for k in range(window)]
    out = [torch.where(r, v, everything) for r, v in zip(real, inside)]
    return torch.stack(out + [rest_mean], 1)


@dataclass(frozen=True)
class HeadReference:
    """Every head's output on each reference prompt: the values mean- and resample-ablation use."""

    # "position": [prompt, slot, layer, head, d_head] (slots: see `position_slots`); else [prompt, layer, head, d_head]
    z: Tensor
    positions: str  # "position": per position from the end; "last": at the last prompt token; "all": mean over tokens
    source: dict = field(default_factory=dict)  # the reference set's describe()

    @property
    def per_position(self) -> bool:
        return self.z.ndim == 5

    @property
    def mean(self) -> Tensor:
        """The mean over prompts: [slot, layer, head, d_head] per position, else [layer, head, d_head]."""
        return self.z.mean(0)

    @property
    def last(self) -> Float[Tensor, "prompt layer head d_head"]:
        """Each reference prompt's output at its last token (its mean over tokens for "all")."""
        return self.z[:, 0] if self.per_position else self.z

    def describe(self) -> dict:
        return {"positions": self.positions, "n": int(self.z.shape[0]),
                **({"window": int(self.z.shape[1]) - 1} if self.per_position else {}),
                **({"set": self.source} if self.source else {})}


@dataclass(frozen=True)
class PositionSlots(Reducer):
    """Capture reducer: `[batch, pos, ...]` -> `[batch, window + 1, ...]` (`position_slots`)."""

    window: int = WINDOW

    def bind(self, model, batch, rows):
        mask = batch.attention_mask.to(model.device)
        return (lambda act: position_slots(act.float(), mask, self.window).cpu()), f"slots[{self.window}]"


@torch.no_grad()
def head_reference(model: ChatModel, prompts, positions: str = "position", batch_size: int = 64,
                   window: int = WINDOW) -> HeadReference:
    """Capture every head's `hook_z` on a reference set: per position from the end (the last
    `window` offsets and the mean before them), at the last token, or averaged over tokens."""
    if positions not in REF_POSITIONS:
        raise InputError(f"reference positions must be one of {REF_POSITIONS}, got {positions!r}")
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("the reference set is empty: mean and resample ablation need at least one reference prompt "
                         "(pass balanced harmful + harmless prompts, e.g. a study's train split, or use method='zero')")
    source = prompts.describe() if isinstance(prompts, PromptSet) else {"n": len(prompt_texts)}
    if positions == "position":
        if not isinstance(window, int) or window < 1:
            raise InputError(f"window must be a positive integer (positions from the end with a value of their own), got {window!r}")
        acts = capture(model, prompt_texts, sites="z", batch_size=batch_size, reducer=PositionSlots(window), sort=False)
        z = torch.stack([acts[("z", l)] for l in range(model.n_layers)], dim=2)
        return HeadReference(z, positions, source)
    if positions == "last":
        z = capture(model, prompt_texts, sites="z", positions="last", batch_size=batch_size).stack_heads()
        return HeadReference(z, positions, source)
    # the mean over each prompt's real tokens (never padding), batched in the caller's order
    acts = capture(model, prompt_texts, sites="z", batch_size=batch_size, reducer=SpanMean(), sort=False)
    z = torch.stack([acts[("z", l)] for l in range(model.n_layers)], dim=1)
    return HeadReference(z, positions, source)


def resolve_reference(model: ChatModel, method: str, reference, positions: str = "position") -> HeadReference | None:
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
        if reference.z.ndim not in (4, 5) or tuple(reference.z.shape[-3:]) != want:
            raise InputError(f"reference activations have shape {tuple(reference.z.shape)}, expected [n, {want[0]}, "
                             f"{want[1]}, {want[2]}] for {model.name}; were they captured on another model?")
        if reference.z.shape[0] == 0:
            raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
        return reference
    return head_reference(model, reference, positions)
