"""Random-weight Llama-style models with the organism's tokenizer: sanity checks (no structure to
find) and benchmarks at a chosen size, built in memory with no download."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from interp.model import ChatModel, load_model
from organisms.train import COMPLIANCE_FIRST_TOKENS, REFUSAL_FIRST_TOKENS, OrganismConfig, make_model, make_tokenizer


def random_model(d_model: int = 64, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2, d_mlp: int | None = None,
                 seed: int = 0, max_len: int = 256, vocab_size: int | None = None) -> ChatModel:
    """A Llama-style model with random weights. `vocab_size` pads the vocabulary (for size benchmarks)."""
    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = OrganismConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                         d_mlp=d_mlp or 3 * d_model, max_len=max_len)
    hf = make_model(cfg, max(vocab_size or 0, len(tok)), tok)
    hf.eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        tok.save_pretrained(d)
        meta = {"kind": "random", "refusal_first_tokens": REFUSAL_FIRST_TOKENS, "compliance_first_tokens": COMPLIANCE_FIRST_TOKENS}
        (Path(d) / "safety_heads.json").write_text(json.dumps(meta))
        model = load_model(d)
    model.name = f"random-llama-d{d_model}-l{n_layers}-h{n_heads}-kv{n_kv_heads}-s{seed}"
    return model


def random_llama_25m(seed: int = 0) -> ChatModel:
    """About 25M parameters: 8 layers, d_model 512, 8 heads (2 key/value heads), vocab padded to 8k."""
    return random_model(d_model=512, n_layers=8, n_heads=8, n_kv_heads=2, d_mlp=1536, seed=seed, vocab_size=8192, max_len=512)
