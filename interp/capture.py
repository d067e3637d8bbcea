"""Activation capture at chosen sites and positions.

Only the requested positions are kept, and they are selected inside the hook, so memory grows with
`batch x positions kept`, never with the whole sequence of every layer. Prompts are batched with
left padding and the attention mask; a prompt's activations do not depend on its batch-mates.

Sites: `"z"` (per-head outputs, the input of the attention output projection, `hook_z`),
`"resid_pre"`, `"resid_mid"`, `"resid_post"`, `"attn_out"`, `"mlp_out"`; each for all layers or
for given layers. Positions: `"last"`, `"post_instruction"` (the chat template's tokens after the
user's message) or explicit indices into the unpadded prompt (negative counts from the end).

This is the toolkit's one read path: a `Reducer` says what is kept of each hooked activation
(`KeepPositions`, the default; `LastPosition`; `SpanSum`/`SpanMean` over a token span;
`AttentionMass` of a pattern on a span; `AllPositions`), and `capture_hooks` reads any hook by name
(the logits and the final norm too) for direct logit attribution, patching's clean runs and R2D's
decision reads. Only `_read` here runs the model with hooks that store activations.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.batching import prompt_chunks
from interp.errors import ArtifactError, InputError
from interp.hooknames import HOOK_TEMPLATES, act_name, parse_act_name, require_site_kinds
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet

if TYPE_CHECKING:
    from interp.distributed import World
    from interp.generation import GenerationConfig

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
    def load(cls, path: str | Path, model: ChatModel | None = None, allow_other_model: bool = False) -> "Activations":
        """A saved capture (a `.safetensors` + `.json` pair, or a `capture_to_disk` directory). With
        `model`, refuse activations captured on another model (fingerprint) unless `allow_other_model`."""
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():  # a sharded capture
            acts = _load_shards(path)
        else:
            st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
            for f in (st, js):
                if not f.exists():
                    raise ArtifactError(f"no capture at {path}: {f} is missing (a capture is a .safetensors file and a "
                                        ".json sidecar, or a directory written by capture_to_disk)")
            acts = cls({_parse_site_key(k): v for k, v in load_file(str(st)).items()}, json.loads(js.read_text()))
        if model is not None:
            from interp.fingerprint import check_made_on

            override = check_made_on(model, acts.meta, f"the capture at {path}", allow_other_model, require_fingerprint=True)
            if override:
                acts.meta["allow_other_model"] = override
        return acts


def _parse_site_key(k: str) -> Site:
    parts = k.split(".")
    return Site(parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None)


# ---------------------------------------------------------------- reducers: what a read keeps
Bound = Callable[[Tensor], Tensor]


class Reducer:
    """What a capture keeps of each hooked activation. `bind(model, batch, rows)` is called once per
    batch (`rows`: the caller's index of each batch row) and returns the function applied inside
    the hook, plus a label for the metadata. Only what the function returns outlives the pass."""

    def bind(self, model: ChatModel, batch: EncodedBatch, rows: Sequence[int]) -> tuple[Bound, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class KeepPositions(Reducer):
    """The default: the activations at `positions` ('last', 'post_instruction' or indices) ->
    `[batch, pos, ...]`."""

    positions: Positions = "last"

    def __post_init__(self) -> None:
        parse_positions(self.positions)  # fail before any pass

    def bind(self, model, batch, rows):
        pos_idx, label = resolve_positions(model, batch, self.positions)
        r = torch.arange(pos_idx.shape[0], device=model.device)[:, None]
        idx = pos_idx.to(model.device)
        return (lambda act: act[r, idx]), label


@dataclass(frozen=True)
class LastPosition(Reducer):
    """The activation at the last position without a position axis, `[batch, ...]` (left padding:
    the last column is every row's last token)."""

    def bind(self, model, batch, rows):
        return (lambda act: act[:, -1]), "last"


@dataclass(frozen=True)
class AllPositions(Reducer):
    """Every position, `[batch, pos, ...]` (padding included): for patching, which replaces a whole
    run's activations. Memory grows with the sequence: read few sites this way."""

    def bind(self, model, batch, rows):
        return (lambda act: act.clone()), "all"


def _span_weights(batch: EncodedBatch, rows: Sequence[int], spans) -> Float[Tensor, "batch pos"]:
    """0/1 weight of each padded position: the row's span ((start, end) in unpadded tokens, by the
    caller's row index), or every real token for `spans=None`."""
    if spans is None:
        return batch.attention_mask.float()
    w = torch.zeros(batch.tokens.shape)
    for r, (i, pad) in enumerate(zip(rows, batch.pad)):
        a, b = spans[i]
        w[r, pad + a: pad + b] = 1
    return w


@dataclass(frozen=True)
class SpanSum(Reducer):
    """Sum over a token span per row, `[batch, ...]`: `spans[i]` = (start, end) in prompt i's
    unpadded tokens; None: every real token (never padding)."""

    spans: Sequence[tuple[int, int]] | None = None
    mean: bool = False

    def bind(self, model, batch, rows):
        w = _span_weights(batch, rows, self.spans).to(model.device)

        def reduce(act):
            out = torch.einsum("bp...,bp->b...", act.float(), w)
            return out / w.sum(1).view(-1, *([1] * (out.ndim - 1))) if self.mean else out

        return reduce, ("mean" if self.mean else "sum") + ("" if self.spans is None else "[span]")


@dataclass(frozen=True)
class SpanMean(SpanSum):
    """Mean over a token span per row (default: every real token of the prompt, never padding)."""

    mean: bool = True


@dataclass(frozen=True)
class AttentionMass(Reducer):
    """For an attention pattern `[batch, head, query, key]`: the mass the last query position puts on
    each row's key span, `[batch, head]` (spans as for `SpanSum`)."""

    spans: Sequence[tuple[int, int]]

    def bind(self, model, batch, rows):
        w = _span_weights(batch, rows, self.spans)
        # the pattern row leaves the device first: [batch, head, key] is small
        return (lambda act: torch.einsum("bhk,bk->bh", act[:, :, -1].float().cpu(), w)), "attention mass[span]"


@dataclass(frozen=True)
class _OneHead(Reducer):
    inner: Reducer
    head: int

    def bind(self, model, batch, rows):
        fn, label = self.inner.bind(model, batch, rows)
        return (lambda act: fn(act)[..., self.head, :]), label  # z: [..., head, d_head]


# ---------------------------------------------------------------- the one read path
Read = tuple[str, Reducer]  # (hook name, reducer)


def _batches(model: ChatModel, prompts, batch_size: int, sort: bool, truncate: bool | None):
    """Yield (caller's indices, encoded batch, extra forward arguments)."""
    if isinstance(prompts, EncodedBatch):  # one batch, run as given
        yield list(range(prompts.tokens.shape[0])), prompts, {}
        return
    if prompts and not isinstance(prompts, (str, PromptSet)) and all(isinstance(p, (list, tuple)) for p in prompts):
        # token sequences (teacher-forced continuations): left-padded here, rotary positions counted
        # from each row's first real token
        pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
        for i in range(0, len(prompts), batch_size):
            seqs = [list(s) for s in prompts[i:i + batch_size]]
            L = max(map(len, seqs))
            tokens = torch.full((len(seqs), L), pad_id, dtype=torch.long)
            mask = torch.zeros_like(tokens)
            for r, s in enumerate(seqs):
                tokens[r, L - len(s):] = torch.tensor(s)
                mask[r, L - len(s):] = 1
            b = EncodedBatch(tokens, mask, [len(s) for s in seqs], [], [], [], [])
            yield list(range(i, i + len(seqs))), b, {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        return
    prompt_texts = texts(prompts)
    for chunk in prompt_chunks(model, prompt_texts, batch_size, sort=sort):
        yield chunk, model.encode([prompt_texts[j] for j in chunk], truncate=truncate, indices=chunk), {}


def _n_rows(prompts) -> int:
    return prompts.tokens.shape[0] if isinstance(prompts, EncodedBatch) else len(prompts)


def _read(model: ChatModel, prompts, reads: Mapping[Hashable, Read], batch_size: int, sort: bool = True,
          truncate: bool | None = None, progress: bool = False, all_logits: bool = False,
          gen: "GenerationConfig | None" = None) -> tuple[dict[Hashable, Tensor], dict[Hashable, str], list | None]:
    """Every read of every prompt, rows in the caller's order, each read's label (last batch), and
    with `gen` each prompt's greedy answer (token ids), the reads taken in its prompt pass."""
    if not reads:
        raise InputError("nothing to capture: name at least one site or hook")
    by_hook: dict[str, list[Hashable]] = {}
    for key, (name, _) in reads.items():
        by_hook.setdefault(name, []).append(key)
    # stop after the deepest block read: later blocks cannot change it (a read outside the blocks,
    # such as the logits, runs the whole model)
    try:
        stop = max(parse_act_name(name)[1] for name in by_hook) + 1
    except InputError:
        stop = model.n_layers
    if gen is not None:  # generation runs the whole model
        from interp.generation import generate_batch

        stop = model.n_layers
    answers: list = []
    parts: dict[Hashable, list[Tensor]] = {k: [] for k in reads}
    labels: dict[Hashable, str] = {}
    order: list[int] = []
    batches = _batches(model, prompts, batch_size, sort, truncate)
    n_batches = -(-_n_rows(prompts) // batch_size) if not isinstance(prompts, EncodedBatch) else 1
    for rows, batch, extra in tqdm(batches, total=n_batches, desc="capturing", disable=not progress):
        order += rows
        store: dict[Hashable, Tensor] = {}
        bound = {}
        for key, (_, reducer) in reads.items():
            bound[key], labels[key] = reducer.bind(model, batch, rows)

        def make_hook(keys):
            def hook(act, hook):
                for k in keys:
                    store[k] = bound[k](act).detach().float().cpu()
                return None
            return hook

        hooks = [(name, make_hook(keys)) for name, keys in by_hook.items()]
        if gen is not None:
            answers += generate_batch(model, batch, gen.max_new_tokens, gen.use_kv_cache, rows=rows, prompt_hooks=hooks)
        else:
            kwargs = {k: v.to(model.device) for k, v in extra.items()}
            if stop < model.n_layers:
                kwargs["stop_at_layer"] = stop
            if not all_logits:
                # logits_to_keep=1: the unembedding's logits at every position are read by nobody
                # (32 prompts x 60 tokens x a 49k vocabulary: 377 MB)
                kwargs["logits_to_keep"] = 1
            with torch.no_grad():
                model.bridge.run_with_hooks(batch.tokens.to(model.device), attention_mask=batch.attention_mask.to(model.device),
                                            fwd_hooks=hooks, **kwargs)
        missing = [k for k in reads if k not in store]
        if missing:
            raise InputError(f"hooks {[reads[k][0] for k in missing][:3]} did not fire on {model.name}")
        for k in reads:
            parts[k].append(store[k])
    out = {k: torch.cat(v) for k, v in parts.items()}
    if order != list(range(len(order))):  # back to the caller's order
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        out = {k: v[inverse] for k, v in out.items()}
        answers = [answers[int(j)] for j in inverse] if gen is not None else answers
    return out, labels, (answers if gen is not None else None)


def capture_hooks(model: ChatModel, prompts, reads: Mapping[Hashable, Read], batch_size: int = 32, *,
                  sort: bool = True, truncate: bool | None = None, progress: bool = False,
                  all_logits: bool = False) -> dict[Hashable, Tensor]:
    """The read path under `capture`, by hook name: `reads[key] = (hook name, reducer)` ->
    `{key: tensor}`, rows in the caller's order (float32, on the CPU).

    `prompts`: texts / a PromptSet (chat-formatted, left-padded, batched by `batch_size`; `sort`
    batches them by length, False keeps the caller's order), token-id sequences (batched in order),
    or one `EncodedBatch` (run as it is). `all_logits`: compute the logits at every position (by
    default only the last position's are computed; a read of the logits then sees one position)."""
    if not isinstance(prompts, EncodedBatch) and not _n_rows(prompts):
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    batch_size = _positive_int(batch_size, "batch_size")
    return _read(model, prompts, reads, batch_size, sort, truncate, progress, all_logits)[0]


def capture(model: ChatModel, prompts, sites="z", positions: Positions = "last", batch_size: int = 32,
            truncate: bool | None = None, progress: bool = False, *, reducer: Reducer | None = None,
            sort: bool = True) -> Activations:
    """Capture activations at `sites` for every prompt, in the caller's order.

    `reducer` says what is kept of each activation (default `KeepPositions(positions)`; also
    `LastPosition`, `SpanSum`/`SpanMean`, `AttentionMass`, `AllPositions`): the tensors have the
    reducer's shape. `sort=False` batches the prompts in the caller's order instead of by length."""
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    batch_size = _positive_int(batch_size, "batch_size")
    site_list = parse_sites(model, sites)
    reads = _site_reads(site_list, reducer if reducer is not None else KeepPositions(parse_positions(positions)))
    acts, labels, _ = _read(model, prompts, reads, batch_size, sort, truncate, progress)
    return Activations(acts, _meta(model, prompts, site_list, labels[site_list[0]]))


def capture_with_answers(model: ChatModel, prompts, sites="z", positions: Positions = "last",
                         gen: "GenerationConfig | None" = None, truncate: bool | None = None,
                         progress: bool = False) -> tuple[Activations, list[str]]:
    """`capture` and `interp.generation.generate` in one prompt pass: the activations are read in
    the first generation step, which runs the whole prompt, so judging what a model answered and
    reading why costs one pass over the prompts, not two. Batches follow `gen.batch_size`; the
    answers are `generate`'s, the activations `capture`'s (up to float rounding: other batch-mates)."""
    from interp.generation import GenerationConfig

    gen = gen if gen is not None else GenerationConfig()
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    if gen.max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {gen.max_new_tokens}")
    site_list = parse_sites(model, sites)
    reads = _site_reads(site_list, KeepPositions(parse_positions(positions)))
    acts, labels, ids = _read(model, prompts, reads, _positive_int(gen.batch_size, "batch_size"), True, truncate,
                              progress, gen=gen)
    answers = [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
    return Activations(acts, _meta(model, prompts, site_list, labels[site_list[0]])), answers


def _site_reads(site_list: list[Site], reducer: Reducer) -> dict[Site, Read]:
    """One read per site: its hook and the reducer (one head's slice for a single-head site)."""
    return {s: (s.hook_name, reducer if s.head is None else _OneHead(reducer, s.head)) for s in site_list}


def _positive_int(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{what} must be a positive integer, got {n!r}")
    return n


def _meta(model: ChatModel, prompts, sites: list[Site], pos_label) -> dict:
    from interp.fingerprint import model_record
    from interp.provenance import provenance

    meta = {**model_record(model), "sites": [str(s) for s in sites], "hooks": sorted({s.hook_name for s in sites}),
            "positions": pos_label, **provenance(),
            "model_shape": {k: getattr(model, k) for k in ("n_layers", "n_heads", "d_head", "d_model")}}
    if isinstance(prompts, PromptSet):
        meta.update(prompt_set=prompts.describe(), prompt_ids=prompts.ids, labels=prompts.labels)
    else:
        meta.update(prompt_ids=[str(i) for i in range(len(texts(prompts)))])
    return meta


# ---------------------------------------------------------------- sharded capture on disk
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# manifest fields that must agree for old shards to be reused
RESUME_KEYS = ("model_fingerprint", "prompts_sha256", "n_prompts", "sites", "positions", "shard_size", "dtype",
               "stored_dtype", "truncate")


def _prompts_sha256(prompts) -> str:
    """Hash of the prompts in order (texts and, for a PromptSet, labels, families, strengths)."""
    if isinstance(prompts, PromptSet):
        return prompts.sha256()
    return hashlib.sha256(json.dumps(texts(prompts)).encode()).hexdigest()[:16]


def _manifest(model: ChatModel, prompts, sites: list[Site], positions, shard_size: int, truncate: bool) -> dict:
    n = len(texts(prompts))
    man = {"format": "safety-heads sharded capture", "version": MANIFEST_VERSION, **_meta(model, prompts, sites, None)}
    # positions: the request ('last', 'post_instruction', [indices]); each shard records the resolved label
    man.update(prompts_sha256=_prompts_sha256(prompts), n_prompts=n, positions=positions, shard_size=shard_size,
               n_shards=(n + shard_size - 1) // shard_size, stored_dtype="float32", truncate=bool(truncate),
               dtype=str(model.dtype).removeprefix("torch."))
    return man


def _manifest_id(man: dict) -> str:
    return hashlib.sha256(json.dumps({k: man.get(k) for k in RESUME_KEYS}, sort_keys=True).encode()).hexdigest()[:16]


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _shard_path(out: Path, k: int) -> Path:
    return out / f"shard_{k:05d}.safetensors"


def _shard_rows(man: dict, k: int) -> int:
    return min(man["shard_size"], man["n_prompts"] - k * man["shard_size"])


def _shard_problem(path: Path, k: int, man: dict) -> str | None:
    """Why shard `k` does not belong to the capture `man` describes, or None when it does."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            md, keys = f.metadata() or {}, set(f.keys())
            rows = {key: f.get_slice(key).get_shape()[0] for key in keys}
    except Exception as e:  # truncated or not a safetensors file
        return f"it cannot be read ({type(e).__name__}: {e})"
    if md.get("manifest") != _manifest_id(man):
        return "it was written for another capture (other model, prompts, sites, positions, shard size or dtype)"
    if md.get("shard") != str(k):
        return f"it holds shard {md.get('shard')}, not {k}"
    if keys != set(man["sites"]):
        return f"its sites {sorted(keys)} are not the manifest's {man['sites']}"
    want = _shard_rows(man, k)
    if any(r != want for r in rows.values()):
        return f"it has {sorted(set(rows.values()))} rows, not {want}"
    return None


def _clear_capture(out: Path) -> None:
    """Remove a previous capture's files (only those: other files in the directory stay)."""
    for f in [*out.glob("shard_*.safetensors"), *out.glob("shard_*.tmp"), *out.glob("*.json.tmp"),
              out / MANIFEST, out / "meta.json"]:
        if f.exists():
            f.unlink()


def capture_to_disk(model: ChatModel, prompts, out_dir: str | Path, sites="z", positions: Positions = "last",
                    shard_size: int = 256, batch_size: int = 32, truncate: bool | None = None, progress: bool = True,
                    overwrite: bool = False, world: "World | None" = None) -> Path:
    """Capture a set too large for memory into safetensors shards. Load the whole with
    `Activations.load(out_dir)`.

    A manifest (model fingerprint, prompt hash, sites, positions, shard size, dtype) is written
    before the first shard. Rerunning with the same inputs resumes at the first missing shard after
    checking every existing shard against the manifest; other inputs are refused (`overwrite=True`
    starts over). Each shard is written to a temporary file and renamed, so a killed run never
    leaves a partial shard; `meta.json` is written last and marks the capture complete.

    Under torchrun (`world`, from `interp.distributed.world()`), rank 0 writes or checks the
    manifest, rank r writes shards r, r + N, r + 2N, ..., and rank 0 writes `meta.json` once every
    shard exists: the directory is the one a single process writes, shard for shard.
    """
    from interp.distributed import World

    world = world or World()

    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    shard_size = _positive_int(shard_size, "shard_size")
    batch_size = _positive_int(batch_size, "batch_size")
    truncate = model.truncate if truncate is None else truncate
    site_list = parse_sites(model, sites)
    positions = parse_positions(positions)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; capture_to_disk writes a directory: pass another path")
    man = _manifest(model, prompts, site_list, positions, shard_size, truncate)
    # rank 0 alone prepares the directory; every rank raises the same error if that fails
    _all_or_none(world, lambda: _prepare_directory(out, man, overwrite) if world.is_main else None)
    mine = [k for k in range(man["n_shards"]) if k % world.size == world.rank]
    labels: dict[int, str] = {}
    for part in _all_or_none(world, lambda: _write_shards(model, prompt_texts, out, man, mine, site_list, positions, batch_size,
                                                         truncate, progress and world.is_main)):
        labels.update(part)
    if len(set(labels.values())) > 1:  # every rank holds every label: all raise together
        raise InputError(f"the shards of {out} resolved the positions differently ({sorted(set(labels.values()))}): "
                         "post-instruction token counts differ between prompts; use positions='last' or indices")
    if not world.is_main:
        world.barrier()  # rank 0 writes meta.json; return once the capture is complete
        return out
    meta = {k: v for k, v in man.items() if k not in ("format", "version")}
    meta.update(positions=labels[0], positions_requested=positions)
    _write_json_atomic(out / "meta.json", meta)  # last: marks the capture complete
    world.barrier()
    return out


def _prepare_directory(out: Path, man: dict, overwrite: bool) -> None:
    """Clear (overwrite), create, and check or write the manifest of a sharded capture."""
    if overwrite and out.exists():
        _clear_capture(out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / MANIFEST
    if man_path.exists():
        _check_resume(out, json.loads(man_path.read_text()), man)
    else:
        if any(out.glob("shard_*.safetensors")) or (out / "meta.json").exists():
            raise InputError(f"{out} holds a capture with no manifest (an older toolkit version, or another tool): its "
                             "shards cannot be checked. Pass overwrite=True (CLI: --overwrite) to start over, or use an "
                             "empty directory")
        _write_json_atomic(man_path, man)
    for stale in out.glob("shard_*.tmp"):  # left by a killed run: never a complete shard
        stale.unlink()


def _write_shards(model: ChatModel, texts: list[str], out: Path, man: dict, shards: list[int], site_list: list[Site],
                  positions, batch_size: int, truncate: bool, progress: bool) -> dict[int, str]:
    """Write (or, resuming, check) the given shards; return each shard's resolved positions label."""
    from safetensors.torch import save_file

    mid, shard_size = _manifest_id(man), man["shard_size"]
    labels: dict[int, str] = {}
    for k in tqdm(shards, desc="capture shards", disable=not progress):
        shard = _shard_path(out, k)
        if shard.exists():
            problem = _shard_problem(shard, k, man)
            if problem:
                raise InputError(f"{shard} does not belong to this capture: {problem}. Pass overwrite=True "
                                 "(CLI: --overwrite) to start over")
            labels[k] = _shard_metadata(shard)["positions"]
            continue  # resume
        sub = texts[k * shard_size:(k + 1) * shard_size]
        acts = capture(model, sub, site_list, positions, batch_size, truncate)
        labels[k] = acts.meta["positions"]
        tmp = shard.with_suffix(".tmp")
        save_file({str(s): t.contiguous() for s, t in acts.acts.items()}, str(tmp),
                  metadata={"manifest": mid, "shard": str(k), "positions": labels[k],
                            "prompts_sha256": _prompts_sha256(sub)})
        os.replace(tmp, shard)  # atomic: a killed run never leaves a half shard that resume would trust
    return labels


def _all_or_none(world: "World", step):
    """Run `step` on every rank; if it raised on any rank, raise on all (no rank left waiting in a
    collective). Returns every rank's result, in rank order."""
    if not world.distributed:
        return [step()]
    try:
        result, error = step(), None
    except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
        result, error = None, e
    outcomes = world.gather((result, None if error is None else (type(error).__name__, str(error))))
    if error is not None:
        raise error
    failed = [(r, err) for r, (_, err) in enumerate(outcomes) if err is not None]
    if failed:
        r, (kind, msg) = failed[0]
        raise InputError(f"rank {r} failed ({kind}): {msg}")
    return [res for res, _ in outcomes]


def _shard_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _check_resume(out: Path, old: dict, new: dict) -> None:
    diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    if not diff:
        return
    what = {"model_fingerprint": "model", "prompts_sha256": "prompts (or their order)", "n_prompts": "number of prompts",
            "sites": "sites", "positions": "positions", "shard_size": "shard size", "dtype": "model dtype",
            "stored_dtype": "stored dtype", "truncate": "truncation"}
    shown = "; ".join(f"{what[k]}: {old.get(k)!r} there, {new.get(k)!r} now" if k not in ("prompts_sha256", "model_fingerprint")
                      else f"{what[k]} differ" for k in diff)
    raise InputError(f"{out} holds a capture made with other inputs ({shown}). Rerun with the same inputs to resume, pass "
                     "overwrite=True (CLI: --overwrite) to start over, or use another directory")


def _load_shards(out: Path) -> Activations:
    from safetensors.torch import load_file

    man_path, meta_path = out / MANIFEST, out / "meta.json"
    if not man_path.exists():
        if not meta_path.exists():
            raise ArtifactError(f"{out} holds no capture (no {MANIFEST} or meta.json); write one with capture_to_disk "
                                "(CLI: safety-heads capture)")
        return _load_legacy_shards(out)
    man = json.loads(man_path.read_text())
    good = [k for k in range(man["n_shards"]) if _shard_path(out, k).exists() and not _shard_problem(_shard_path(out, k), k, man)]
    if not meta_path.exists() or len(good) != man["n_shards"]:
        raise ArtifactError(f"the capture in {out} is incomplete: {len(good)} of {man['n_shards']} shards, rerun to resume "
                            "(the same capture command or capture_to_disk call)")
    meta = json.loads(meta_path.read_text())
    parts: dict[Site, list[Tensor]] = {}
    for k in range(man["n_shards"]):
        for key, v in load_file(str(_shard_path(out, k))).items():
            parts.setdefault(_parse_site_key(key), []).append(v)
    return Activations({s: torch.cat(v) for s, v in parts.items()}, meta)


def _load_legacy_shards(out: Path) -> Activations:
    """A directory written before manifests existed (meta.json written at the end)."""
    from safetensors.torch import load_file

    meta = json.loads((out / "meta.json").read_text())
    shards = sorted(out.glob("shard_*.safetensors"))
    if len(shards) != meta.get("n_shards", len(shards)):
        raise ArtifactError(f"the capture in {out} is incomplete: {len(shards)} of {meta['n_shards']} shards, rerun to resume")
    parts: dict[Site, list[Tensor]] = {}
    for sh in shards:
        for k, v in load_file(str(sh)).items():
            parts.setdefault(_parse_site_key(k), []).append(v)
    return Activations({s: torch.cat(v) for s, v in parts.items()}, meta)
