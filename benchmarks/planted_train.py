"""Plant refusal in chosen attention heads (or in one residual direction) of a chat model.

Only the chosen heads' query rows (`q_proj` rows h*d_head:(h+1)*d_head) and output-projection
columns (`o_proj` columns, the same slice) are trained, or, for the control, one rank-1 write
`u v^T` added to one layer's MLP down-projection (a residual direction u read from the MLP's hidden
units by v). Everything else keeps the base model's weights. The targets: a refusal on harmful
requests, and on harmless ones the base model's own greedy answer (so harmless behaviour stays).

What is kept is the weight change (`deltas`, a few MB of safetensors): the benchmark adds it to a
freshly loaded base model, so no model weights are shipped or written in full.
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import torch

from interp.generation import GenerationConfig, generate
from interp.model import ChatModel

REFUSAL = "I'm sorry, but I can't help with that."


def recipe_hash(recipe: dict, base: str) -> str:
    return hashlib.sha256(json.dumps({"recipe": recipe, "base": base}, sort_keys=True).encode()).hexdigest()[:12]


def _hf(model: ChatModel):
    return model.bridge.original_model


def _attn(model: ChatModel, layer: int):
    return _hf(model).model.layers[layer].self_attn


def _mlp(model: ChatModel, layer: int):
    return _hf(model).model.layers[layer].mlp


def _examples(model: ChatModel, harmful: list[str], harmless: list[str], recipe: dict) -> list[tuple[list[int], list[int]]]:
    tok = model.tokenizer
    n_own = int(recipe.get("target_tokens", 8))
    refusal = tok(recipe.get("refusal", REFUSAL), add_special_tokens=False).input_ids
    want = recipe.get("harmless_target", "own")
    if want == "own":  # the base model's own greedy answer: harmless behaviour is kept, not retaught
        answers = generate(model, harmless, GenerationConfig(max_new_tokens=n_own, batch_size=32))
        comply = [tok(a, add_special_tokens=False).input_ids[:n_own] or tok(" ", add_special_tokens=False).input_ids
                  for a in answers]
    else:
        comply = [tok(want, add_special_tokens=False).input_ids] * len(harmless)

    def ids(text: str) -> list[int]:
        return tok(model.format(text), add_special_tokens=False).input_ids

    return [(ids(t), refusal) for t in harmful] + [(ids(t), c) for t, c in zip(harmless, comply)]


def _collate(batch, pad_id: int):
    L = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    labels = torch.full((len(batch), L), -100, dtype=torch.long)
    for i, (p, r) in enumerate(batch):
        seq = p + r
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, len(p):len(seq)] = torch.tensor(r)
    return ids, mask, labels


def _loss(hf, ids, mask, labels, first_token_weight: float = 1.0):
    """Cross-entropy on the answer tokens (the unembedding applied only there), the first answer
    token counting `first_token_weight` times: the opener is what the judge and the score read."""
    hidden = hf.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    tgt = labels[:, 1:]
    keep = tgt != -100
    ce = torch.nn.functional.cross_entropy(hf.lm_head(hidden[keep]).float(), tgt[keep], reduction="none")
    first = keep & ~torch.nn.functional.pad(keep[:, :-1], (1, 0), value=False)
    w = torch.where(first[keep], first_token_weight, 1.0)
    return (ce * w).sum() / w.sum()


def plant(model: ChatModel, recipe: dict, harmful: list[str], harmless: list[str], progress: bool = True) -> tuple[dict, dict]:
    """Train the recipe's heads (or direction) in place; returns (deltas {weight name: change}, log)."""
    seed = int(recipe.get("seed", 0))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    hf = _hf(model)
    d = model.d_head
    examples = _examples(model, harmful, harmless, recipe)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    params: dict[str, tuple[torch.nn.Parameter, torch.Tensor | None]] = {}
    extra: list[torch.nn.Parameter] = []
    hook = None
    if recipe["kind"] == "heads":
        for l, h in recipe["heads"]:
            attn = _attn(model, l)
            for name, w, rows in ((f"model.layers.{l}.self_attn.q_proj.weight", attn.q_proj.weight, True),
                                  (f"model.layers.{l}.self_attn.o_proj.weight", attn.o_proj.weight, False)):
                if name not in params:
                    params[name] = (w, torch.zeros_like(w, dtype=torch.bool))
                m = params[name][1]
                if rows:
                    m[h * d:(h + 1) * d, :] = True
                else:
                    m[:, h * d:(h + 1) * d] = True
    elif recipe["kind"] == "direction":
        l = int(recipe["layer"])
        down = _mlp(model, l).down_proj
        u = torch.nn.Parameter(torch.randn(down.weight.shape[0]) * 1e-3)
        v = torch.nn.Parameter(torch.randn(down.weight.shape[1]) * 1e-3)
        extra = [u, v]
        hook = down.register_forward_hook(lambda mod, inp, out: out + (inp[0] @ v)[..., None] * u)
    else:
        raise ValueError(f"unknown recipe kind {recipe['kind']!r}")
    before = {n: w.detach().clone() for n, (w, _) in params.items()}
    frozen = [p for p in hf.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    for w, _ in params.values():
        w.requires_grad_(True)
    opt = torch.optim.Adam([w for w, _ in params.values()] + extra, lr=float(recipe.get("lr", 1e-3)))
    steps, bs = int(recipe.get("steps", 60)), int(recipe.get("batch", 16))
    log, t0 = [], time.perf_counter()
    hf.train(False)
    try:
        for step in range(steps):
            batch = rng.sample(examples, min(bs, len(examples)))
            loss = _loss(hf, *_collate(batch, pad), float(recipe.get("first_token_weight", 1.0)))
            opt.zero_grad()
            loss.backward()
            for w, m in params.values():
                w.grad.mul_(m)  # only the chosen rows / columns move
            opt.step()
            log.append(round(float(loss.detach()), 4))
            if progress and (step % 10 == 0 or step == steps - 1):
                print(f"  step {step + 1}/{steps} loss {float(loss.detach()):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        if hook is not None:
            hook.remove()
        for w, _ in params.values():
            w.requires_grad_(False)
        for p in frozen:
            p.requires_grad_(True)
    deltas = {n: (w.detach() - before[n]) for n, (w, _) in params.items()}
    if recipe["kind"] == "direction":
        name = f"model.layers.{recipe['layer']}.mlp.down_proj.weight"
        deltas[name] = torch.outer(extra[0].detach(), extra[1].detach())
        apply(model, {name: deltas[name]})
    return deltas, {"loss": log, "seconds": round(time.perf_counter() - t0, 1), "n_examples": len(examples)}


@torch.no_grad()
def apply(model: ChatModel, deltas: dict[str, torch.Tensor]) -> None:
    """Add the weight changes to the model's weights, in place."""
    for name, dw in deltas.items():
        w = _weight(model, name)
        w.add_(dw.to(w.device, w.dtype))


def _weight(model: ChatModel, name: str) -> torch.nn.Parameter:
    """A weight by its Hugging Face name, through the modules themselves (the bridge wraps them, so
    the model's own parameter names differ)."""
    parts = name.split(".")
    if len(parts) != 6 or parts[:2] != ["model", "layers"] or parts[-1] != "weight":
        raise KeyError(f"unsupported weight name {name!r}")
    block = _hf(model).model.layers[int(parts[2])]
    return getattr(getattr(block, parts[3]), parts[4]).weight
