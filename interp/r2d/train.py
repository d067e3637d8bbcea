"""Reasoning-to-Defend training on any Llama-style chat model: pivot tokens, teacher traces from
the user's prompts (`interp.r2d.teacher`), a LoRA adapter (`interp.lora`) plus the pivots' own
embedding rows, trained with the LM loss plus the CPO term (`interp.r2d.loss`; `cpo_weight=0` is
SFT only). `safety-heads r2d train --model M --harmful F --harmless F --out DIR` calls `train_r2d`.

Deterministic at a seed and a thread count: every draw comes from generators seeded here and torch
runs in deterministic mode with `threads` intra-op threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from interp import lora
from interp.errors import InputError
from interp.prompts import PromptSet
from interp.provenance import provenance
from interp.r2d import adapter, pivots, teacher
from interp.r2d.data import PIVOTS, SAFE, UNSAFE
from interp.r2d.loss import cpo_loss


@dataclass(frozen=True)
class R2DTrainConfig:
    """The training recipe. Defaults: the paper adds CPO to the LM loss with weight 1; the LoRA and
    optimiser settings are those of `organism:smollm2` (rank 8 on q/k/v/o of every layer)."""

    steps: int = 200
    batch_size: int = 8
    lr: float = 1.5e-3
    warmup: int = 10
    cpo_weight: float = 1.0
    answer_tokens: int = 48  # length of the base model's own answers used after [SAFE]
    threads: int = 1
    bf16_autocast: bool = False  # bfloat16 matmuls (CPU autocast): ~1.5x faster where the CPU has bf16 units
    harmful_fraction: float | None = None  # None: batches drawn from all prompts alike; else this share harmful
    lora: lora.LoRAConfig = field(default_factory=lora.LoRAConfig)
    teacher: teacher.TeacherConfig = field(default_factory=teacher.TeacherConfig)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.threads < 1 or self.answer_tokens < 1:
            raise InputError("steps, batch_size, threads and answer_tokens must be at least 1, got "
                             f"{self.steps}, {self.batch_size}, {self.threads}, {self.answer_tokens}")
        if not self.cpo_weight >= 0:
            raise InputError(f"cpo_weight must be 0 or more (0 = SFT on the traces only), got {self.cpo_weight}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.harmful_fraction is not None and not 0 < self.harmful_fraction < 1:
            raise InputError(f"harmful_fraction must be between 0 and 1 (or None), got {self.harmful_fraction}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora"]["targets"] = list(self.lora.targets)
        return d


def log(msg: str) -> None:
    print(f"[r2d train] {msg}", file=sys.stderr, flush=True)


def base_answers(model_name: str, texts: list[str], max_new: int, batch_size: int = 16,
                 phrases: dict | None = None) -> list[list[int]]:
    """The base model's greedy answers (token ids, end-of-turn appended when the answer ended), through
    the toolkit's own loader and generation. `phrases`: refusal_phrases / compliance_phrases for
    `load_model` (needed only by a vocabulary without the common openers)."""
    from interp.generation import generate_batch
    from interp.model import load_model

    model = load_model(model_name, **(phrases or {}))
    eos = model.tokenizer.eos_token_id
    out: list[list[int]] = []
    for i in range(0, len(texts), batch_size):
        for ids in generate_batch(model, model.encode(texts[i:i + batch_size]), max_new):
            out.append(list(ids) + ([eos] if len(ids) < max_new else []))
    return out


def build_examples(tok, prompts: PromptSet, answers: dict[str, list[int]], ids: dict[str, int],
                   cfg: teacher.TeacherConfig) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per prompt: the teacher's steps and the final answer."""
    refusal = teacher.refusal_ids(tok, cfg)
    out = []
    for p in prompts:
        final = refusal if p.label == "harmful" else answers[p.text]
        out.append((teacher.prompt_ids(tok, p.text), teacher.response_ids(tok, teacher.teacher_steps(p, cfg), ids, final)))
    return out


def collate(batch: list[tuple[list[int], list[int]]], pad: int):
    L = max(len(a) + len(b) for a, b in batch)
    toks = torch.full((len(batch), L), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    labels = torch.full((len(batch), L), -100, dtype=torch.long)
    for r, (a, b) in enumerate(batch):
        toks[r, :len(a) + len(b)] = torch.tensor(a + b)
        mask[r, :len(a) + len(b)] = 1
        labels[r, len(a):len(a) + len(b)] = torch.tensor(b)
    return toks, mask, labels


def losses(model, toks, mask, labels, safe: int, unsafe: int):
    """(LM loss, CPO term) on the response tokens; the unembedding runs only where there is a target."""
    hidden = model.model(input_ids=toks, attention_mask=mask).last_hidden_state
    tgt = labels[:, 1:]
    keep = tgt != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    nxt = tgt[keep]
    return F.cross_entropy(logits, nxt), cpo_loss(logits[None], nxt[None], safe, unsafe)


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def train_r2d(model_name: str, prompts: PromptSet, out: str | Path, cfg: R2DTrainConfig = R2DTrainConfig(),
              seed: int = 0, files: dict[str, str] | None = None, progress: bool = True,
              phrases: dict | None = None, answers: dict[str, list[int]] | None = None,
              extra: dict | None = None, per_step: bool = False) -> dict:
    """Train R2D on `model_name` from `prompts` (harmful, harmless and optional jailbreak rows) into
    `out`; returns the recipe. `files`: role -> prompt file, hashed into the recipe. `phrases`:
    refusal_phrases / compliance_phrases of this model (recorded, so that `r2d:DIR` loads with them).
    `answers`: harmless text -> the base model's answer ids (end-of-turn included where it ended),
    used instead of generating them; only texts it lacks are generated. `extra`: more provenance,
    recorded under the recipe's `data`. `per_step`: log every step's losses and seconds."""
    from safetensors.torch import save_file

    labels = {p.label for p in prompts}
    if labels != {"harmful", "harmless"}:
        raise InputError(f"R2D training needs harmful and harmless prompts, got only {sorted(labels)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    t0, load0 = time.time(), _loadavg()
    try:
        torch.manual_seed(seed)
        given = dict(answers or {})
        harmless = sorted({p.text for p in prompts if p.label == "harmless"} - set(given))
        if progress:
            log(f"base model's own answers to {len(harmless)} harmless prompts ({cfg.answer_tokens} tokens each)"
                + (f"; {len(given)} given" if given else ""))
        answers = dict(zip(harmless, base_answers(model_name, harmless, cfg.answer_tokens, phrases=phrases)
                           if harmless else []))
        answers.update(given)
        t_answers = time.time() - t0
        if progress:
            log(f"answers in {t_answers:.0f}s; training {cfg.steps} steps of {cfg.batch_size} on {len(prompts)} prompts")
        torch.use_deterministic_algorithms(True)
        model, tok, _ = adapter.load_base_hf(model_name, attn="sdpa")
        if not hasattr(model, "model") or model.get_output_embeddings() is None:
            raise InputError(f"{model_name} is not a Llama-style causal LM (no .model decoder and output embedding)")
        base_fp = adapter.base_fingerprint(model)
        ids = pivots.add_pivot_tokens(tok)
        rows = pivots.grow_embeddings(model, ids, seed)
        adapters = lora.attach(model, cfg.lora, seed)
        emb = [model.get_input_embeddings().weight] + ([] if pivots.tied(model) else [model.get_output_embeddings().weight])
        hooks = [pivots.row_gradient_mask(w, rows) for w in emb]
        examples = build_examples(tok, prompts, answers, ids, cfg.teacher)
        params = [p for m in adapters.values() for p in (m.A, m.B)]
        opt = torch.optim.AdamW([{"params": params}, {"params": emb}], lr=cfg.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, 1 - s / cfg.steps))
        rng = random.Random(seed)
        by_label = {lab: [i for i, p in enumerate(prompts) if p.label == lab] for lab in ("harmful", "harmless")}
        model.train()
        t_train = time.time()
        hist, loss_log = [], []
        for step in range(cfg.steps):
            t_step = time.time()
            batch = [examples[i] for i in draw(rng, by_label, len(examples), cfg)]
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
                lm, cpo = losses(model, *collate(batch, pad), ids[SAFE], ids[UNSAFE])
            opt.zero_grad(set_to_none=True)
            (lm + cfg.cpo_weight * cpo).backward()
            torch.nn.utils.clip_grad_norm_(params + emb, 1.0)
            opt.step()
            sched.step()
            hist.append((lm.item(), cpo.item()))
            if progress and per_step:
                log(json.dumps({"step": step + 1, "lm": round(hist[-1][0], 4), "cpo": round(hist[-1][1], 4),
                                "step_seconds": round(time.time() - t_step, 2), "seconds": round(time.time() - t_train, 1)}))
            if step % 10 == 9 or step == cfg.steps - 1:
                tail = hist[-10:]
                rec = {"step": step + 1, "lm": round(sum(h[0] for h in tail) / len(tail), 4),
                       "cpo": round(sum(h[1] for h in tail) / len(tail), 4), "seconds": round(time.time() - t_train, 1)}
                loss_log.append(rec)
                if progress and not per_step:
                    log(json.dumps(rec))
        for h in hooks:
            h.remove()
        model.eval()
        tensors = lora.adapter_tensors(adapters)
        rows_saved = pivots.pivot_rows(model, rows)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads_before)
    save_file(tensors, str(out / adapter.ADAPTER_FILE))
    save_file(rows_saved, str(out / adapter.PIVOTS_FILE))
    from interp.scoring import RefusalJudge

    judge = RefusalJudge()
    refused = sum(judge.is_refusal(tok.decode(a, skip_special_tokens=True)) for a in answers.values())
    recipe = {
        "kind": adapter.KIND, "base": adapter.base_name(model_name), "seed": seed, "cpo_weight": cfg.cpo_weight,
        "config": cfg.to_dict(), "pivot_ids": ids, "pivot_order": list(PIVOTS), "response_prefix": teacher.STEP,
        **{k: list(v) for k, v in (phrases or {}).items() if v},
        "fingerprints": {"base": base_fp, "adapter": lora.fingerprint(tensors), "pivots": lora.fingerprint(rows_saved)},
        "data": {"files": {role: {"path": str(f), "sha256": file_hash(f)} for role, f in (files or {}).items()},
                 "counts": {lab: sum(p.label == lab for p in prompts) for lab in ("harmful", "harmless")},
                 "wrapped": sum(teacher.wrapped(p) for p in prompts),
                 "wrapped_families": dict(sorted(Counter(p.family for p in prompts if teacher.wrapped(p)).items())),
                 "prompts_sha256": prompts.sha256(),
                 "harmless_answers_judged_refusals": refused, "harmless_answers_given": len(given), **(extra or {})},
        "teacher": ("rule-based (interp.r2d.teacher): one step restating the request (cut to "
                    f"{cfg.teacher.max_request_words} words) closed by [SAFE]/[UNSAFE] by the prompt's label, after a "
                    "[RETHINK] step for wrapped jailbreak rows; then a fixed refusal after [UNSAFE], the base model's "
                    f"own greedy answer ({cfg.answer_tokens} tokens) after [SAFE]"),
        "final_lm_loss": loss_log[-1]["lm"], "final_cpo_loss": loss_log[-1]["cpo"], "loss_log": loss_log,
        "seconds": {"answers": round(t_answers, 1), "steps": round(time.time() - t_train, 1), "total": round(time.time() - t0, 1)},
        "torch_threads": cfg.threads, "loadavg_start": load0, "loadavg_end": _loadavg(), **provenance(),
    }
    (out / adapter.RECIPE_FILE).write_text(json.dumps(recipe, indent=1))
    return recipe


def draw(rng: random.Random, by_label: dict[str, list[int]], n: int, cfg: R2DTrainConfig) -> list[int]:
    """One batch's example indices: uniform over all prompts, or `harmful_fraction` of them harmful."""
    if cfg.harmful_fraction is None:
        return rng.sample(range(n), min(cfg.batch_size, n))
    k = round(cfg.harmful_fraction * cfg.batch_size)
    return (rng.sample(by_label["harmful"], min(k, len(by_label["harmful"])))
            + rng.sample(by_label["harmless"], min(cfg.batch_size - k, len(by_label["harmless"]))))


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
