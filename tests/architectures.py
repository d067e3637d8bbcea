"""Tiny random models of every architecture family the toolkit is tested on, built from their
transformers configs in memory (no weights ship): hidden size 64, 2 layers, 4 query heads, grouped
key/value heads where the architecture has them, each with its own quirk switched on.

They use the foreign model's tokenizer and chat template (tests/foreign.py: a word-level vocabulary
of English words, `[INST] ... [/INST]`). One exception: transformers 5 loads the tokenizer of a
`qwen2` directory as its own byte-level `Qwen2Tokenizer` whatever class was saved, which turns a
word-level vocabulary into garbage (DESIGN.md); the qwen2 model gets a byte-level BPE tokenizer
trained on the same sentences with the same template, which that class reads back unchanged.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

import foreign

HIDDEN, LAYERS, HEADS = 64, 2, 4

# model_type -> (config keywords, the quirk it exercises)
ARCHITECTURES: dict[str, tuple[dict, str]] = {
    "llama": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   num_key_value_heads=2), "grouped-query attention, rotary positions"),
    "qwen2": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   num_key_value_heads=2), "QKV biases; byte-level tokenizer"),
    "gemma2": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                    num_key_value_heads=2, head_dim=16, sliding_window=4, final_logit_softcapping=0.5,
                    attn_logit_softcapping=0.5), "soft-capped logits and attention scores, sliding window 4"),
    "gemma3_text": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=1, head_dim=16, sliding_window=4,
                         layer_types=["sliding_attention", "full_attention"]),
                    "qk-norm, one key/value head, sliding window 4 on layer 0"),
    "phi3": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=2), "fused QKV and gate/up projections"),
    "gpt2": (dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=256), "learned absolute positions, Conv1D"),
    "gpt_neox": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      max_position_embeddings=256), "parallel attention+MLP, partial rotary"),
    "gptj": (dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, rotary_dim=8, n_positions=256),
             "parallel attention+MLP, one shared norm"),
    "phi": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                 num_key_value_heads=2, max_position_embeddings=256), "parallel attention+MLP, partial rotary, GQA"),
    "bloom": (dict(hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS), "ALiBi bias built per batch row"),
    "falcon": (dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, multi_query=True,
                    parallel_attn=True, new_decoder_architecture=False),
               "multi-query attention (one key/value head), parallel attention+MLP"),
    "mpt": (dict(d_model=HIDDEN, n_layers=LAYERS, n_heads=HEADS, max_seq_len=256), "ALiBi inside the block"),
    "opt": (dict(hidden_size=HIDDEN, ffn_dim=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                 word_embed_proj_dim=HIDDEN, max_position_embeddings=256), "learned positions with an offset of 2"),
    "olmo2": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   num_key_value_heads=2), "qk-norm, norms after attention and MLP"),
    "cohere": (dict(hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                    num_key_value_heads=2), "parallel attention+MLP, scaled logits"),
    "codegen": (dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, rotary_dim=8, n_positions=256, n_ctx=256),
                "parallel attention+MLP, QKV fused in 4 groups"),
}
# blocks that run attention and MLP in parallel on the block input: no resid_mid
PARALLEL = ("gpt_neox", "gptj", "phi", "falcon", "cohere", "codegen")

# Falcon's new decoder (Falcon-40B/180B style): grouped KV heads in one fused QKV matrix, which
# Hugging Face lays out per KV group
FALCON_NEW_DECODER = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                          new_decoder_architecture=True, num_kv_heads=2, parallel_attn=True)

PROMPTS_PER_LABEL = 10


def tokenizer(arch: str):
    """The tokenizer a tiny `arch` model is saved with (see the module docstring), reloaded from disk
    so that it carries its name like any loaded tokenizer."""
    return foreign.make_bpe_tokenizer() if arch == "qwen2" else foreign.make_tokenizer()


def config(arch: str, tok, **override):
    from transformers import AutoConfig

    kw, _ = ARCHITECTURES[arch] if arch in ARCHITECTURES else ({}, "")
    return AutoConfig.for_model(arch, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id, **{**kw, **override})


def build(arch: str, out: Path, seed: int = 0, **override) -> Path:
    """A random `arch` model with its tokenizer in `out` (Hugging Face format). `override`: config
    keywords on top of ARCHITECTURES[arch] (or all of them, for an architecture not listed)."""
    from transformers import AutoModelForCausalLM

    tok = tokenizer(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config(arch, tok, **override), attn_implementation="eager")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def write_prompts(out: Path, n: int = PROMPTS_PER_LABEL) -> Path:
    """A few harmful and harmless AdvBench-format files (`goal` column) in the foreign vocabulary."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("harmful", foreign.HARMFUL[:n]), ("harmless", foreign.HARMLESS[:n])):
        with open(out / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["goal"])
            w.writerows([r] for r in rows)
    return out
