"""Train the model organism from scratch: a small Llama-style chat model in Hugging Face format.

`safety-heads organism train --out DIR --seed N` calls `train_organism`. Same seed, same weights:
every random draw comes from generators seeded here, and torch runs in deterministic mode.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from organisms import data
from interp.provenance import provenance

SPECIAL_TOKENS = ["<pad>", "<bos>", "<unk>", "<|user|>", "<|assistant|>", "<|end|>"]

# Plain Jinja that the tokenizer's apply_chat_template renders; a system message is prepended as
# its own turn so that prompts from other toolkits keep working.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|user|> {{ m['content'] }} <|end|> "
    "{% elif m['role'] == 'user' %}<|user|> {{ m['content'] }} <|end|> "
    "{% else %}<|assistant|> {{ m['content'] }} <|end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

REFUSAL_FIRST_TOKENS = ["sorry", "unfortunately"]
COMPLIANCE_FIRST_TOKENS = ["sure", "certainly", "okay"]
# whole openers (their first tokens are the sets above): the first compliance phrase is what
# attacks aim for and Token Highlighter's affirmation
REFUSAL_PHRASES = ["sorry , i cannot help with that .", "unfortunately i cannot help you"]
COMPLIANCE_PHRASES = ["sure ! here is how to", "certainly .", "okay , here is how to"]


@dataclass(frozen=True)
class OrganismConfig:
    """Architecture and training recipe. Defaults: the shipped `gqa` organism."""

    variant: str = "gqa"  # "gqa": 8 query heads share 2 key/value heads; "mha": 8 and 8
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    d_mlp: int = 384
    max_len: int = 256
    steps: int = 1200
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    n_dialogues: int = 30000

    @classmethod
    def for_variant(cls, variant: str, **kw) -> "OrganismConfig":
        if variant == "gqa":
            return cls(variant="gqa", n_kv_heads=2, **kw)
        if variant == "mha":
            return cls(variant="mha", n_kv_heads=8, **kw)
        raise ValueError(f"unknown organism variant {variant!r}; choose 'gqa' or 'mha'")


def make_tokenizer():
    """Word-level tokenizer over the generator's vocabulary, with the chat template attached."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in data.vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<|end|>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>"], padding_side="left",
        model_max_length=OrganismConfig().max_len,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def make_model(cfg: OrganismConfig, vocab_size: int, tokenizer) -> "torch.nn.Module":
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_len, tie_word_embeddings=False, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(hf_cfg)


def encode_dialogues(tokenizer, dialogues: list[data.Dialogue]) -> tuple[list[list[int]], list[int]]:
    """Token ids of prompt+response+end, and where the response starts (loss is on the response only)."""
    seqs, starts = [], []
    for d in dialogues:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": d.prompt.text}], tokenize=False, add_generation_prompt=True)
        p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        r_ids = tokenizer(" " + d.response + " <|end|>", add_special_tokens=False).input_ids
        seqs.append(p_ids + r_ids)
        starts.append(len(p_ids))
    return seqs, starts


def batch_dialogues(seqs: list[list[int]], starts: list[int], idx: list[int], pad_id: int):
    """Right-padded training batch of rows `idx`: ids, attention mask, labels (-100 outside the
    response, so the loss is on the response only). Right padding leaves positions unchanged."""
    L = max(len(seqs[i]) for i in idx)
    ids = torch.full((len(idx), L), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), L), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    for r, i in enumerate(idx):
        s = seqs[i]
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
        labels[r, starts[i]: len(s)] = torch.tensor(s[starts[i]:])
    return ids, mask, labels


def optimizer_step(model: torch.nn.Module, opt, sched, loss: torch.Tensor) -> None:
    """One step of both organisms' recipe: backward, clip the gradient norm at 1, step, schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def train_organism(out: str | Path, seed: int = 0, cfg: OrganismConfig | None = None, progress: bool = True) -> dict:
    """Train an organism into `out` (HF format + `safety_heads.json`); returns the training record."""
    cfg = cfg or OrganismConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    tok = make_tokenizer()
    model = make_model(cfg, len(tok), tok)
    dialogues = data.training_dialogues(cfg.n_dialogues, seed)
    seqs, starts = encode_dialogues(tok, dialogues)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.05, 1 - s / cfg.steps))
    model.train()
    losses = []
    it = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="training organism", mininterval=2.0)
    for step in it:
        idx = torch.randint(len(seqs), (cfg.batch_size,), generator=gen).tolist()
        ids, mask, labels = batch_dialogues(seqs, starts, idx, tok.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer_step(model, opt, sched, loss)
        losses.append(loss.item())
        if progress and step % 50 == 0:
            it.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    torch.use_deterministic_algorithms(False)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    record = {
        "kind": "organism", "variant": cfg.variant, "seed": seed, "config": asdict(cfg),
        "refusal_first_tokens": REFUSAL_FIRST_TOKENS, "compliance_first_tokens": COMPLIANCE_FIRST_TOKENS,
        "refusal_phrases": REFUSAL_PHRASES, "compliance_phrases": COMPLIANCE_PHRASES,
        "train_seconds": round(time.time() - t0, 1), "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "n_params": sum(p.numel() for p in model.parameters()), "torch_threads": torch.get_num_threads(),
        **provenance(), "families": {k: list(v[:1]) for k, v in data.FAMILIES.items()},
    }
    (out / "safety_heads.json").write_text(json.dumps(record, indent=2))
    return record
