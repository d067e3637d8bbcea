"""The one read path: `capture` (sites and positions -> `Activations`), `capture_hooks` (any hook by
name: the logits and the final norm too, for direct logit attribution, patching's clean runs and
R2D's decision reads) and `capture_with_answers` (reads taken in the prompt pass of a greedy
generation). Only `_read` here runs the model with hooks that store activations.

Only the requested positions are kept, and they are selected inside the hook, so memory grows with
`batch x positions kept`, never with the whole sequence of every layer. Prompts are batched with
left padding and the attention mask; a prompt's activations do not depend on its batch-mates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Hashable, Mapping

import torch
from torch import Tensor
from interp.progress import counted, in_scope, pass_bar, silenced

from interp.batching import left_pad, prompt_chunks
from interp.capture.activations import Activations
from interp.capture.reducers import KeepPositions, Reducer, _OneHead
from interp.capture.sites import Positions, Site, parse_positions, parse_sites
from interp.errors import InputError
from interp.hooknames import parse_act_name
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet

if TYPE_CHECKING:
    from interp.generation import GenerationConfig

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
            tokens, mask = left_pad(seqs, pad_id)
            b = EncodedBatch(tokens, mask, [len(s) for s in seqs], [], [], [], [])
            yield list(range(i, i + len(seqs))), b, {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        return
    prompt_texts = texts(prompts)
    for chunk in prompt_chunks(model, prompt_texts, batch_size, sort=sort):
        yield chunk, model.encode([prompt_texts[j] for j in chunk], truncate=truncate, indices=chunk), {}


def _n_rows(prompts) -> int:
    return prompts.tokens.shape[0] if isinstance(prompts, EncodedBatch) else len(prompts)


def _read(model: ChatModel, prompts, reads: Mapping[Hashable, Read], batch_size: int, sort: bool = True,
          truncate: bool | None = None, progress: bool | None = None, all_logits: bool = False,
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
    # progress None: a bar inside a study's stage, for a pass of some seconds (interp.progress)
    with silenced(not (progress if progress is not None else in_scope())):
        bar = pass_bar(_n_rows(prompts), "capturing", quiet_short=progress is None)
    for rows, batch, extra in counted(batches, bar, size=lambda item: len(item[0])):
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
                  sort: bool = True, truncate: bool | None = None, progress: bool | None = None,
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
            truncate: bool | None = None, progress: bool | None = None, *, reducer: Reducer | None = None,
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
                         progress: bool | None = None) -> tuple[Activations, list[str]]:
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
