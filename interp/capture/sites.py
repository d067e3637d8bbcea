"""Where an activation lives and which of its positions a read keeps.

Sites: `"z"` (per-head outputs, the input of the attention output projection, `hook_z`),
`"resid_pre"`, `"resid_mid"`, `"resid_post"`, `"attn_out"`, `"mlp_out"`; each for all layers or
for given layers (`Site`, `parse_sites`). Positions: `"last"`, `"post_instruction"` (the chat
template's tokens after the user's message) or explicit indices into the unpadded prompt (negative
counts from the end): `parse_positions`, and `resolve_positions` for one left-padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import HOOK_TEMPLATES, act_name, require_site_kinds
from interp.model import ChatModel, EncodedBatch

# the site kinds a capture names (artifacts, plots, the CLI); their hook names come from act_name
SITE_HOOKS = {k: HOOK_TEMPLATES[k] for k in ("z", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")}

Positions = Union[str, Sequence[int]]


@dataclass(frozen=True)
class Site:
    """Where an activation lives: `Site("z", 3)` is every head of layer 3, `Site("z", 3, 5)` one head."""

    kind: str
    layer: int
    head: int | None = None

    @property
    def hook_name(self) -> str:
        return act_name(self.kind, self.layer)

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}" + (f".{self.head}" if self.head is not None else "")

    def as_tuple(self) -> tuple:
        return (self.kind, self.layer) if self.head is None else (self.kind, self.layer, self.head)


def parse_sites(model: ChatModel, sites) -> list[Site]:
    """Accept 'z', ['z', 'resid_post'], ('z', 3), ('z', 3, 1), Site(...) and mixtures; validate all."""
    if isinstance(sites, (str, Site)) or (isinstance(sites, tuple) and sites and isinstance(sites[0], str)):
        sites = [sites]
    out: list[Site] = []
    for s in sites:
        if isinstance(s, str):
            kind, layers, head = s, range(model.n_layers), None
        elif isinstance(s, Site):
            kind, layers, head = s.kind, [s.layer], s.head
        else:
            s = tuple(s)
            kind, layers, head = s[0], [s[1]], (s[2] if len(s) > 2 else None)
        if kind not in SITE_HOOKS:
            raise InputError(f"unknown site kind {kind!r}; known: {sorted(SITE_HOOKS)}")
        for l in layers:
            if not (isinstance(l, int) and 0 <= l < model.n_layers):
                raise InputError(f"layer {l} out of range for {model.name} with {model.n_layers} layers (0..{model.n_layers - 1})")
            if head is not None:
                if kind != "z":
                    raise InputError(f"site {kind!r} has no heads; only 'z' takes a head index")
                if not (isinstance(head, int) and 0 <= head < model.n_heads):
                    raise InputError(f"head {head} out of range for {model.name} with {model.n_heads} heads per layer (0..{model.n_heads - 1})")
            out.append(Site(kind, l, head))
    if not out:
        raise InputError("no sites given: name at least one, e.g. 'z' or ('resid_post', 2)")
    require_site_kinds(model, dict.fromkeys(s.kind for s in out), "sites", SITE_HOOKS)  # before any forward pass
    return out


POSITION_NAMES = {"last": "last", "post_instruction": "post_instruction", "post-instruction": "post_instruction",
                  "eoi": "post_instruction"}


def parse_positions(positions: Positions) -> str | list[int]:
    """'last', 'post_instruction', or a list of integer indices; from a list or a string such as
    '0,-1' (the CLI's form). Anything else is an `InputError` that says what is accepted."""
    hint = "use 'last', 'post_instruction' or integer indices such as '0,-1' (negative counts from the end)"
    if isinstance(positions, str):
        key = positions.strip()
        if key in POSITION_NAMES:
            return POSITION_NAMES[key]
        parts = [x.strip() for x in key.split(",")]
        try:
            idx = [int(x) for x in parts]
        except ValueError:
            raise InputError(f"unknown positions {positions!r}: {hint}") from None
        return idx
    try:
        idx = list(positions)
    except TypeError:
        raise InputError(f"unknown positions {positions!r}: {hint}") from None
    if not idx:
        raise InputError("explicit positions list is empty")
    for p in idx:
        if isinstance(p, bool) or not isinstance(p, (int, Tensor)) or (isinstance(p, Tensor) and p.numel() != 1):
            raise InputError(f"position {p!r} is not an integer: {hint}")
    return [int(p) for p in idx]


def resolve_positions(model: ChatModel, batch: EncodedBatch, positions: Positions) -> tuple[Tensor, str]:
    """Padded index of each kept position per row: LongTensor [batch, n_pos], and a label."""
    pad = batch.pad
    positions = parse_positions(positions)
    if positions == "last":
        rel = [[n - 1] for n in batch.lengths]
        label = "last"
    elif positions == "post_instruction":
        rel = model.post_instruction_positions(batch)
        if len({len(r) for r in rel}) != 1:
            raise InputError("prompts have different numbers of post-instruction tokens under this chat template; "
                             "use positions='last' or explicit indices")
        n = len(rel[0])
        label = f"post_instruction[{n}]"
    else:
        idx = positions
        rel = []
        for r, n in enumerate(batch.lengths):
            row = []
            for p in idx:
                q = p + n if p < 0 else p
                if not 0 <= q < n:
                    raise InputError(f"position {p} is outside prompt {r} of {n} tokens")
                row.append(q)
            rel.append(row)
        label = f"indices{idx}"
    return torch.tensor([[pad[r] + q for q in row] for r, row in enumerate(rel)], dtype=torch.long), label
