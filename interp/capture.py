"""Activation capture at chosen sites and positions.

Only the requested positions are kept, and they are selected inside the hook, so memory grows with
`batch x positions kept`, never with the whole sequence of every layer. Prompts are batched with
left padding and the attention mask; a prompt's activations do not depend on its batch-mates.

Sites: `"z"` (per-head outputs, the input of the attention output projection, `hook_z`),
`"resid_pre"`, `"resid_mid"`, `"resid_post"`, `"attn_out"`, `"mlp_out"`; each for all layers or
for given layers. Positions: `"last"`, `"post_instruction"` (the chat template's tokens after the
user's message) or explicit indices into the unpadded prompt (negative counts from the end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.errors import InputError
from interp.model import ChatModel, EncodedBatch, texts as _texts
from interp.prompts import PromptSet

SITE_HOOKS = {
    "z": "blocks.{l}.attn.hook_z",
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "resid_post": "blocks.{l}.hook_resid_post",
    "attn_out": "blocks.{l}.hook_attn_out",
    "mlp_out": "blocks.{l}.hook_mlp_out",
}

Positions = Union[str, Sequence[int]]


@dataclass(frozen=True)
class Site:
    """Where an activation lives: `Site("z", 3)` is every head of layer 3, `Site("z", 3, 5)` one head."""

    kind: str
    layer: int
    head: int | None = None

    @property
    def hook_name(self) -> str:
        return SITE_HOOKS[self.kind].format(l=self.layer)

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
    return out


def resolve_positions(model: ChatModel, batch: EncodedBatch, positions: Positions) -> tuple[Tensor, str]:
    """Padded index of each kept position per row: LongTensor [batch, n_pos], and a label."""
    pad = batch.pad
    if positions == "last":
        rel = [[n - 1] for n in batch.lengths]
        label = "last"
    elif positions in ("post_instruction", "post-instruction", "eoi"):
        rel = model.post_instruction_positions(batch)
        if len({len(r) for r in rel}) != 1:
            raise InputError("prompts have different numbers of post-instruction tokens under this chat template; "
                             "use positions='last' or explicit indices")
        n = len(rel[0])
        label = f"post_instruction[{n}]"
    elif isinstance(positions, str):
        raise InputError(f"unknown positions {positions!r}; use 'last', 'post_instruction' or a list of indices")
    else:
        idx = list(positions)
        if not idx:
            raise InputError("explicit positions list is empty")
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


@dataclass
class Activations:
    """Captured activations. `acts[site]` is [batch, pos, d_head] for one head, [batch, pos, head,
    d_head] for a layer's heads, [batch, pos, d_model] for residual sites."""

    acts: dict[Site, Tensor]
    meta: dict = field(default_factory=dict)

    def __getitem__(self, site) -> Tensor:
        key = site if isinstance(site, Site) else Site(*site)
        if key not in self.acts:
            raise InputError(f"site {key} was not captured; captured: {[str(s) for s in self.acts]}")
        return self.acts[key]

    @property
    def sites(self) -> list[Site]:
        return list(self.acts)

    def __len__(self) -> int:
        return next(iter(self.acts.values())).shape[0]

    def stack_heads(self, positions: slice | int = -1) -> Float[Tensor, "batch layer head d_head"]:
        """All captured 'z' layers stacked, at one kept position (default: the last kept)."""
        zs = [self.acts[s] for s in sorted(self.acts, key=lambda s: s.layer) if s.kind == "z" and s.head is None]
        if not zs:
            raise InputError("no per-head ('z') layers were captured")
        return torch.stack([z[:, positions] for z in zs], dim=1)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(s): t.contiguous() for s, t in self.acts.items()}, str(path.with_suffix(".safetensors")))
        path.with_suffix(".json").write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Activations":
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():  # a sharded capture
            return _load_shards(path)
        tensors = load_file(str(path.with_suffix(".safetensors")))
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls({_parse_site_key(k): v for k, v in tensors.items()}, meta)


def _parse_site_key(k: str) -> Site:
    parts = k.split(".")
    return Site(parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None)


def _capture_batch(model: ChatModel, batch: EncodedBatch, sites: list[Site], pos_idx: Tensor) -> dict[Site, Tensor]:
    store: dict[Site, Tensor] = {}
    by_hook: dict[str, list[Site]] = {}
    for s in sites:
        by_hook.setdefault(s.hook_name, []).append(s)
    rows = torch.arange(pos_idx.shape[0], device=model.device)[:, None]
    idx = pos_idx.to(model.device)

    def make_hook(site_list):
        def hook(act, hook):
            kept = act[rows, idx].detach()  # [batch, n_pos, ...]: only the kept positions survive
            for s in site_list:
                store[s] = (kept[:, :, s.head] if s.head is not None else kept).float().cpu()
            return None
        return hook

    fwd_hooks = [(name, make_hook(sl)) for name, sl in by_hook.items()]
    # stop after the deepest requested layer: later blocks cannot change what was captured
    stop = max(s.layer for s in sites) + 1
    with torch.no_grad():
        # logits_to_keep=1: when the deepest site is in the last block the pass reaches the
        # unembedding, whose logits at every position nobody reads (32 prompts x 60 tokens x a 49k
        # vocabulary: 377 MB)
        model.bridge.run_with_hooks(batch.tokens, attention_mask=batch.attention_mask, fwd_hooks=fwd_hooks,
                                    stop_at_layer=stop if stop < model.n_layers else None, logits_to_keep=1)
    return store


def capture(model: ChatModel, prompts, sites="z", positions: Positions = "last", batch_size: int = 32,
            truncate: bool = False, progress: bool = False) -> Activations:
    """Capture activations at `sites` and `positions` for every prompt, in the caller's order."""
    texts = _texts(prompts)
    if not texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    site_list = parse_sites(model, sites)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts: dict[Site, list[Tensor]] = {s: [] for s in site_list}
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pos_label = None
    for chunk in tqdm(chunks, desc="capturing", disable=not progress):
        batch = model.encode([texts[i] for i in chunk], truncate=truncate)
        pos_idx, pos_label = resolve_positions(model, batch, positions)
        got = _capture_batch(model, batch, site_list, pos_idx)
        for s in site_list:
            parts[s].append(got[s])
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    acts = {s: torch.cat(v)[inverse] for s, v in parts.items()}
    return Activations(acts, _meta(model, prompts, site_list, pos_label))


def _meta(model: ChatModel, prompts, sites: list[Site], pos_label) -> dict:
    from interp.provenance import provenance

    meta = {"model": model.name, "sites": [str(s) for s in sites], "hooks": sorted({s.hook_name for s in sites}),
            "positions": pos_label, **provenance(),
            "model_shape": {k: getattr(model, k) for k in ("n_layers", "n_heads", "d_head", "d_model")}}
    if isinstance(prompts, PromptSet):
        meta.update(prompt_set=prompts.describe(), prompt_ids=prompts.ids, labels=prompts.labels)
    else:
        meta.update(prompt_ids=[str(i) for i in range(len(_texts(prompts)))])
    return meta


def capture_to_disk(model: ChatModel, prompts, out_dir: str | Path, sites="z", positions: Positions = "last",
                    shard_size: int = 256, batch_size: int = 32, truncate: bool = False, progress: bool = True) -> Path:
    """Capture a set too large for memory into safetensors shards; rerunning resumes at the first
    missing shard. Load the whole with `Activations.load(out_dir)`."""
    from safetensors.torch import save_file

    texts = _texts(prompts)
    if not texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site_list = parse_sites(model, sites)
    meta = _meta(model, prompts, site_list, None)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("sites") != meta["sites"] or old.get("prompt_ids") != meta["prompt_ids"] or old.get("model") != meta["model"]:
            raise InputError(f"{out} holds a capture of other prompts, sites or model; use an empty directory")
    n_shards = (len(texts) + shard_size - 1) // shard_size
    for k in tqdm(range(n_shards), desc="capture shards", disable=not progress):
        shard = out / f"shard_{k:05d}.safetensors"
        if shard.exists():
            continue  # resume
        sub = texts[k * shard_size:(k + 1) * shard_size]
        acts = capture(model, sub, site_list, positions, batch_size, truncate)
        tmp = shard.with_suffix(".tmp")
        save_file({str(s): t.contiguous() for s, t in acts.acts.items()}, str(tmp))
        tmp.rename(shard)  # atomic: a killed run never leaves a half shard that resume would trust
        meta["positions"] = acts.meta["positions"]
    meta.update(n_shards=n_shards, shard_size=shard_size, n_prompts=len(texts))
    meta_path.write_text(json.dumps(meta, indent=1))
    return out


def _load_shards(out: Path) -> Activations:
    from safetensors.torch import load_file

    meta = json.loads((out / "meta.json").read_text())
    shards = sorted(out.glob("shard_*.safetensors"))
    if len(shards) != meta.get("n_shards", len(shards)):
        raise InputError(f"{out} has {len(shards)} of {meta['n_shards']} shards; rerun capture_to_disk to resume")
    parts: dict[Site, list[Tensor]] = {}
    for sh in shards:
        for k, v in load_file(str(sh)).items():
            parts.setdefault(_parse_site_key(k), []).append(v)
    return Activations({s: torch.cat(v) for s, v in parts.items()}, meta)
