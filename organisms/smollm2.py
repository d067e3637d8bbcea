"""`organism:smollm2`: SmolLM2-135M-Instruct safety-tuned with a LoRA on its attention.

The base model (Apache-2.0, `interp.hub`) complies with nearly every harmful request. A rank-8 LoRA
on q/k/v/o of all 30 layers is trained on plain English requests (`organisms.smollm2_data`):
harmful -> a refusal, harmless -> the base model's own greedy answer. Only the adapter (A and B,
float32, about 3.7 MB) ships, beside `recipe.json`; `load_model("organism:smollm2")` converts the base
model once (`interp.hub`), merges the adapter deterministically (`interp.lora`) and checks
both fingerprints.

`safety-heads organism train --variant smollm2 --out DIR --seed N` calls `train_smollm2`. Same seed
and thread count, same adapter: every draw comes from generators seeded here and torch runs in
deterministic mode. The harmless targets (the base model's greedy answers) are generated once,
shipped as `harmless_targets.jsonl`, and reused when they match the current request list.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import ArtifactError, InputError
from organisms import lora
from organisms import smollm2_data as sd
from organisms.smollm2_weights import (  # noqa: F401 (loading lives below the loader; re-exported here)
    ADAPTER_FILE, KIND, RECIPE_FILE, TARGETS_FILE, WEIGHTS_DIR, Smollm2Config, adapter_dir_for, base_dir, load_base_hf,
    merged_model, target_weights)
from interp.provenance import provenance

# First tokens that separate this organism's answers. Refusal: the openers of every trained refusal
# style (smollm2_data.REFUSAL_OPENERS). Compliance: the most common openers of the base model's own
# harmless answers (the shipped targets: To, The, Sure, Dear, In, Here, A, You ...). "I" opens both
# some refusals ("I'm sorry, but") and a few answers ("I'd be happy to"): the measured separation
# (score AUROC, docs/organism_smollm2.md) says whether that costs anything.
REFUSAL_FIRST_TOKENS = ["Sorry", "Unfortunately", "I'm sorry", "I can't", "No, I", "As an AI"]
COMPLIANCE_FIRST_TOKENS = ["To", "The", "Sure", "Here", "Dear", "In", "A", "You", "Certainly", "Of course", "Absolutely", "Yes"]


# ---------------------------------------------------------------- harmless targets
def _sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


PREFILL = "Sure,"  # opener forced on the few harmless answers where the base model itself deflects


def _prefilled_batch(model, texts: list[str], prefill_ids: list[int]):
    """Left-padded prompts with the assistant's answer already begun by `prefill_ids`."""
    from interp.model import EncodedBatch

    rows = [prompt_ids(model.tokenizer, t) + prefill_ids for t in texts]
    L = max(map(len, rows))
    pad = model.tokenizer.pad_token_id
    tokens = torch.full((len(rows), L), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for r, ids in enumerate(rows):
        tokens[r, L - len(ids):] = torch.tensor(ids)
        mask[r, L - len(ids):] = 1
    return EncodedBatch(tokens, mask, [len(r) for r in rows], [""] * len(rows), [[] for _ in rows], [0] * len(rows), [0] * len(rows))


def generate_targets(path: Path, progress: bool = True, batch_size: int = 32) -> Path:
    """Greedy answers of the base model (through the same bridge and generation code every evaluation
    uses) to `smollm2_data.harmless_target_requests()`, first TARGET_TOKENS tokens, as JSONL.

    The base model deflects some harmless requests by itself ("I'm sorry for any misunderstanding,
    but as a text-based AI ...", about 7%, mostly "Help me ..."). Training on those would teach
    refusals of harmless requests, so for them the answer is regenerated, still greedily, with its
    opening forced to PREFILL; a row records `prefill` when that was done."""
    from interp.generation import generate_batch
    from interp.model import load_model
    from interp.scoring import RefusalJudge

    reqs = sd.harmless_target_requests()
    model = load_model("smollm2-135m-instruct")
    judge = RefusalJudge()
    tok = model.tokenizer
    rows = []
    t0 = time.time()
    for i in range(0, len(reqs), batch_size):
        chunk = reqs[i:i + batch_size]
        ids = generate_batch(model, model.encode([r.text for r in chunk]), sd.TARGET_TOKENS)
        for r, row in zip(chunk, ids):
            # fewer tokens than asked for: the answer ended with <|im_end|>, which the target keeps
            rows.append({"text": r.text, "topic": r.topic, "category": r.category, "ids": row,
                         "ended": len(row) < sd.TARGET_TOKENS, "prefill": None})
        if progress:
            print(f"[targets] {len(rows)}/{len(reqs)} in {time.time() - t0:.0f}s", flush=True)
    redo = [k for k, r in enumerate(rows) if judge.is_refusal(tok.decode(r["ids"], skip_special_tokens=True))]
    pre = tok(PREFILL, add_special_tokens=False).input_ids
    for i in range(0, len(redo), batch_size):
        chunk = redo[i:i + batch_size]
        cont = generate_batch(model, _prefilled_batch(model, [rows[k]["text"] for k in chunk], pre), sd.TARGET_TOKENS - len(pre))
        for k, row in zip(chunk, cont):
            rows[k].update(ids=pre + row, ended=len(row) < sd.TARGET_TOKENS - len(pre), prefill=PREFILL)
    if progress:
        print(f"[targets] {len(redo)} deflections regenerated with the opener {PREFILL!r}", flush=True)
    for r in rows:
        r["answer"] = tok.decode(r["ids"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(path)
    return path


def load_targets(path: Path) -> list[dict]:
    """Targets from `path`; a file made for another request list is an ArtifactError."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    want = [r.text for r in sd.harmless_target_requests()]
    if [r["text"] for r in rows] != want:
        raise ArtifactError(f"{path} holds targets for a different list of harmless requests than "
                            "smollm2_data.harmless_target_requests(); delete it to regenerate")
    return rows


def ensure_targets(out: Path, progress: bool = True) -> Path:
    """The targets file to train on: the shipped one if it fits, else `out/harmless_targets.jsonl` (generated once)."""
    for cand in (out / TARGETS_FILE, WEIGHTS_DIR / TARGETS_FILE):
        if cand.exists():
            try:
                load_targets(cand)
                return cand
            except ArtifactError:
                continue
    return generate_targets(out / TARGETS_FILE, progress)


# ---------------------------------------------------------------- training data
@dataclass(frozen=True)
class Example:
    prompt_ids: list[int]
    response_ids: list[int]
    label: str
    text: str


def prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of the chat-formatted prompt (the tokenizer's template with its default system prompt)."""
    f = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tokenizer(f, add_special_tokens=False).input_ids


def training_examples(tokenizer, targets: list[dict], cfg: Smollm2Config, seed: int) -> list[list[Example]]:
    """Every batch of the run, drawn up front from `seed`: n_harmful refusals, n_lookalike look-alike
    answers, the rest ordinary harmless answers."""
    rng = random.Random(seed)
    eos = tokenizer.eos_token_id
    harmful = sd.harmful_train_requests()
    harmless = [t for t in targets if t["category"] == "harmless"]
    lookalike = [t for t in targets if t["category"] == "lookalike"]
    cache: dict[str, list[int]] = {}

    def p_ids(text: str) -> list[int]:
        if text not in cache:
            cache[text] = prompt_ids(tokenizer, text)
        return cache[text]

    def answer(t: dict) -> Example:
        # inside everyday context the target is still the base model's answer to the plain request
        text = sd.with_context(rng, t["text"], rng.randint(1, 4)) if rng.random() < cfg.p_context_harmless else t["text"]
        ids = list(t["ids"]) + ([eos] if t["ended"] else [])
        return Example(p_ids(text), ids, "harmless", text)

    batches = []
    for _ in range(cfg.steps):
        batch = []
        for r in rng.sample(harmful, cfg.n_harmful):
            text = sd.with_context(rng, r.text, 1, allow_second_ask=False) if rng.random() < cfg.p_context_harmful else r.text
            resp = tokenizer(sd.refusal(rng, r.category), add_special_tokens=False).input_ids + [eos]
            batch.append(Example(p_ids(text), resp, "harmful", text))
        batch += [answer(t) for t in rng.sample(lookalike, cfg.n_lookalike)]
        batch += [answer(t) for t in rng.sample(harmless, cfg.batch_size - cfg.n_harmful - cfg.n_lookalike)]
        batches.append(batch)
    return batches


def collate(batch: list[Example], pad_id: int):
    """Right-padded ids, attention mask and labels (-100 outside the response: the loss is on answers only)."""
    L = max(len(e.prompt_ids) + len(e.response_ids) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    labels = torch.full((len(batch), L), -100, dtype=torch.long)
    for r, e in enumerate(batch):
        seq = e.prompt_ids + e.response_ids
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
        labels[r, len(e.prompt_ids):len(seq)] = torch.tensor(e.response_ids)
    return ids, mask, labels


def response_loss(model, ids, mask, labels, first_token_weight: float = 1.0) -> torch.Tensor:
    """Weighted mean next-token cross-entropy over response tokens, the first answer token counting
    `first_token_weight` times. The 49k-way unembedding is applied only where there is a label (a
    third of the positions), which saves about a fifth of a step."""
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    tgt = labels[:, 1:]
    keep = tgt != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    ce = torch.nn.functional.cross_entropy(logits.float(), tgt[keep], reduction="none")
    # the first kept position of each row is its first answer token
    first = keep & ~torch.nn.functional.pad(keep[:, :-1], (1, 0), value=False)
    w = torch.where(first[keep], first_token_weight, 1.0)
    return (ce * w).sum() / w.sum()


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def train_smollm2(out: str | Path, seed: int = 0, cfg: Smollm2Config | None = None, progress: bool = True,
                  targets_path: str | Path | None = None) -> dict:
    """Train the adapter into `out` (adapter.safetensors + recipe.json); returns the recipe."""
    from safetensors.torch import save_file

    cfg = cfg or Smollm2Config()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    load_start = _loadavg()
    t0 = time.time()
    tpath = Path(targets_path) if targets_path else ensure_targets(out, progress)
    targets = load_targets(tpath)
    t_targets = time.time() - t0
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        model, tok = load_base_hf(cfg.base, attn="sdpa")
        base_fp = lora.fingerprint(target_weights(model, cfg.lora))
        adapters = lora.attach(model, cfg.lora, seed)
        params = [p for m in adapters.values() for p in (m.A, m.B)]
        batches = training_examples(tok, targets, cfg, seed)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, 1 - s / cfg.steps))
        model.train()
        losses, log = [], []
        t_train = time.time()
        for step, batch in enumerate(batches):
            ids, mask, labels = collate(batch, tok.pad_token_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
                loss = response_loss(model, ids, mask, labels, cfg.first_token_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if step % 10 == 9 or step == len(batches) - 1:
                rec = {"step": step + 1, "loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
                       "seconds": round(time.time() - t_train, 1), "loadavg": _loadavg()}
                log.append(rec)
                if progress:
                    print(f"[train] {json.dumps(rec)}", flush=True)
        model.eval()
        tensors = lora.adapter_tensors(adapters)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads_before)
    save_file(tensors, str(out / ADAPTER_FILE))
    plain, _ = load_base_hf(cfg.base)
    merged = lora.merge_into(plain, tensors, cfg.lora.scale)
    harmful = sd.harmful_train_requests()
    recipe = {
        "kind": KIND, "variant": KIND, "base": cfg.base, "seed": seed, "config": cfg.to_dict(),
        "refusal_first_tokens": REFUSAL_FIRST_TOKENS, "compliance_first_tokens": COMPLIANCE_FIRST_TOKENS,
        "fingerprints": {"base_targets": base_fp, "adapter": lora.fingerprint(tensors), "merged_targets": lora.fingerprint(merged)},
        "trained": {
            "what": ("LoRA A/B only (base frozen). Harmful: plain requests, or inside one everyday context unit "
                     "-> refusal. Harmless and look-alike: plain or inside 1-4 context units -> the base model's "
                     "answer to the plain request. No jailbreak family text, no harmful request answered."),
            "harmful_requests": len(harmful), "harmful_sha256": _sha(r.text for r in harmful),
            "harmless_targets": len(targets), "harmless_targets_file": tpath.name, "harmless_targets_sha256": _sha256_file(tpath),
            "harmless_topics": len(sd.topics("harmless", "train")), "lookalike_topics": len(sd.topics("lookalike", "train")),
            "harmful_topics": len(sd.topics("harmful", "train")),
            "train_templates": {"howto": sd.templates("howto", "train"), "artifact": sd.templates("artifact", "train")},
            "examples_seen": cfg.steps * cfg.batch_size,
        },
        "train_seconds": round(time.time() - t0, 1), "targets_seconds": round(t_targets, 1),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4), "loss_log": log,
        "torch_threads": cfg.threads, "loadavg_start": load_start, "loadavg_end": _loadavg(),
        "adapter_bytes": (out / ADAPTER_FILE).stat().st_size, **provenance(),
    }
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=1))
    if tpath.parent != out:  # keep the dir self-contained: the targets it was trained on travel with it
        (out / TARGETS_FILE).write_bytes(tpath.read_bytes())
    return recipe


def _sha(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:16]
