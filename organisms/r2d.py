"""The Reasoning-to-Defend organism: its tokenizer, its training data (the base organism's prompts
with teacher reasoning traces) and its training (SFT + Contrastive Pivot Optimisation).

This is organism construction, so it lives with the organism; the analysis of R2D models (pivot
parsing, evaluation, the pivot-decision probe) is `interp.r2d` and takes its prompts as data.

Same architecture and recipe as the base organism (`organisms.train`: Llama-style, 4 layers
x 8 heads, 2 key/value heads, AdamW, warmup + linear decay, response-only loss) and the same
training prompts; only the responses (reasoning traces with pivots), the CPO term and the batching
(length-grouped, for speed) differ. `safety-heads organism train --r2d --out DIR` calls `train_r2d_organism`. Same seed, same weights.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from interp.errors import InputError
from interp.provenance import provenance
from organisms import data as org
from organisms.train import (CHAT_TEMPLATE, COMPLIANCE_FIRST_TOKENS, REFUSAL_FIRST_TOKENS, SPECIAL_TOKENS, OrganismConfig,
                                   batch_dialogues, encode_dialogues, make_model, optimizer_step)
from interp.r2d import data as r2d_data
from interp.r2d.loss import cpo_loss, lm_loss, shift
from interp.r2d.model import pivot_ids


# ------------------------------------------------------------------ data
def teacher_trace(prompt, rng: random.Random) -> r2d_data.Trace:
    """The rule-based R2D teacher (`interp.r2d.data.teacher_trace`) with the base organism's own
    refusal / compliance text as the final answer."""
    topic = prompt.meta.get("topic", "")
    answer = org._refuse(rng, topic) if prompt.label == "harmful" else org._comply(rng, topic)
    return r2d_data.teacher_trace(prompt, answer)


def training_dialogues(n: int, seed: int) -> list[org.Dialogue]:
    """The base organism's training prompts (same seed, same draws), with R2D teacher responses."""
    base = org.training_dialogues(n, seed)
    rng = random.Random(seed + 7_919)  # a separate stream: the prompts stay identical to the base mix
    return [org.Dialogue(d.prompt, teacher_trace(d.prompt, rng).text) for d in base]


def vocabulary() -> list[str]:
    """Words the R2D generator can emit beyond the base organism's, plus the look-alike words
    (so that the R2D organism at least has distinct tokens for them; it is never trained on them)."""
    words: set[str] = set()
    for s in [r2d_data.STEP, r2d_data.PLAIN_STEP, r2d_data.REAL_REQUEST_STEP, r2d_data.HELP_STEP,
              *r2d_data.WRAPPER_STEPS.values(), *org.LOOKALIKE_TOPICS]:
        words.update(s.replace("{t}", " ").split())
    return sorted(words - set(org.vocabulary()))


def make_r2d_tokenizer():
    """The base organism's word-level tokenizer (same construction), plus the R2D words and the
    three pivots as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + list(r2d_data.PIVOTS))}
    for w in org.vocabulary() + vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<|end|>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", *r2d_data.PIVOTS], padding_side="left",
        model_max_length=OrganismConfig().max_len,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


# The R2D organism reuses the base organism's architecture and optimiser recipe unchanged (1200
# steps fit < 10 min on 2 idle cores although R2D responses are about twice as long).
R2DConfig = OrganismConfig


def _length_grouped(seqs: list[list[int]], batch_size: int, gen: torch.Generator, group: int = 4) -> list[list[int]]:
    """`group` uniformly drawn batches, re-split by length: similar lengths share a batch, so padding
    (half of every batch when drawn plainly: manyshot prompts are 3x longer) costs little."""
    idx = torch.randint(len(seqs), (batch_size * group,), generator=gen).tolist()
    idx.sort(key=lambda i: len(seqs[i]))
    batches = [idx[k * batch_size:(k + 1) * batch_size] for k in range(group)]
    order = torch.randperm(group, generator=gen).tolist()
    return [batches[k] for k in order]


def train_r2d_organism(out: str | Path, seed: int = 0, steps: int | None = None, cpo_weight: float = 1.0,
                       cfg: R2DConfig | None = None, progress: bool = True) -> dict:
    """Train an R2D organism into `out` (HF format + `safety_heads.json` with kind "r2d").

    `cpo_weight` scales CPO against the LM loss (the paper adds them with weight 1; 0 = SFT only)."""
    cfg = cfg or R2DConfig()
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    if cfg.steps < 1:
        raise InputError(f"steps must be at least 1, got {cfg.steps}")
    if not cpo_weight >= 0:
        raise InputError(f"cpo_weight must be >= 0 (0 = plain SFT on the traces), got {cpo_weight}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t0, c0 = time.time(), time.process_time()
    tok = make_r2d_tokenizer()
    piv = pivot_ids(tok)
    model = make_model(cfg, len(tok), tok)
    dialogues = training_dialogues(cfg.n_dialogues, seed)
    seqs, starts = encode_dialogues(tok, dialogues)
    if any(tok.unk_token_id in s for s in seqs[:2000]):
        raise InputError("a training dialogue has a word outside the R2D vocabulary; rebuild the tokenizer")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.05, 1 - s / cfg.steps))
    model.train()
    lms, cpos = [], []
    it = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="training r2d organism", mininterval=5.0)
    try:
        queue: list[list[int]] = []
        for step in it:
            if not queue:
                queue = _length_grouped(seqs, cfg.batch_size, gen)
            idx = queue.pop(0)
            ids, mask, labels = batch_dialogues(seqs, starts, idx, tok.pad_token_id)
            logits, nxt = shift(model(input_ids=ids, attention_mask=mask).logits, labels)
            lm = lm_loss(logits, nxt)
            cpo = cpo_loss(logits, nxt, piv[r2d_data.SAFE], piv[r2d_data.UNSAFE])
            loss = lm + cpo_weight * cpo
            optimizer_step(model, opt, sched, loss)
            lms.append(lm.item())
            cpos.append(cpo.item())
            if progress and step % 50 == 0:
                it.set_postfix(lm=f"{sum(lms[-50:]) / len(lms[-50:]):.3f}", cpo=f"{sum(cpos[-50:]) / len(cpos[-50:]):.4f}")
    finally:
        torch.use_deterministic_algorithms(False)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    tail = max(1, min(50, len(lms)))
    record = {
        "kind": "r2d", "variant": "r2d", "seed": seed, "config": asdict(cfg), "cpo_weight": cpo_weight,
        "pivots": {"safe": r2d_data.SAFE, "unsafe": r2d_data.UNSAFE, "rethink": r2d_data.RETHINK},
        "response_prefix": r2d_data.STEP,
        # first tokens of the FINAL answer (after the last pivot), not of the response, which
        # always starts with "step": read refusal from the pivot or from the final answer
        "refusal_first_tokens": REFUSAL_FIRST_TOKENS, "compliance_first_tokens": COMPLIANCE_FIRST_TOKENS,
        "judge": "substring judge (interp.scoring.RefusalJudge) on the text after the last pivot; "
                 "decision = last pivot ([UNSAFE] refuses)",
        "teacher": "refuse every harmful request whatever the wrapper (the base organism complies at "
                   "roleplay/manyshot strength 4); [RETHINK] after a wrapper step, then the real request is restated",
        "train_seconds": round(time.time() - t0, 1),
        "train_cpu_seconds": round(time.process_time() - c0, 1),  # ~ wall time on an idle core
        "final_lm_loss": sum(lms[-tail:]) / tail,
        "final_cpo_loss": sum(cpos[-tail:]) / tail, "n_params": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(), **provenance(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "families": {k: {"max": v[0], "trained_refuse": list(v[1]), "base_trained_comply": list(v[2])}
                     for k, v in org.FAMILIES.items()},
        "extra_vocabulary": vocabulary(),
    }
    (out / "safety_heads.json").write_text(json.dumps(record, indent=2))
    return record
