"""Loading a chat model: a `TransformerBridge` plus chat formatting, left-padded batching and the
refusal/compliance first-token sets that refusal scores are read from.

`load_model("organism")` gives the embedded model organism; any Hugging Face name or local
directory goes through exactly the same code.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InputError, ModelLoadError
from interp.prompts import Prompt, PromptSet

ORGANISM_DIR = Path(__file__).parent / "organism" / "weights"
ORGANISM_VARIANTS = ("gqa", "mha", "r2d")

# First tokens of typical refusals / compliant answers of instruction-tuned chat models. Refusal
# follows Arditi et al. (who use the model's own refusal openers, e.g. "I" for Llama-2 chat);
# models whose metadata names sets (the organism's safety_heads.json) override these.
DEFAULT_REFUSAL_PHRASES = ["I cannot", "I can't", "I'm sorry", "Sorry", "I apologize", "As an AI", "Unfortunately", "I am sorry"]
DEFAULT_COMPLIANCE_PHRASES = ["Sure", "Here", "Certainly", "Of course", "Absolutely", "Okay", "To", "Yes", "Step"]


@dataclass
class EncodedBatch:
    """Left-padded token batch. Index `i` of every field belongs to prompt `i` of the input."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    lengths: list[int]  # unpadded length of each prompt
    formatted: list[str]  # chat-formatted text
    offsets: list[list[tuple[int, int]]]  # per prompt, per unpadded token: char span in `formatted`
    content_starts: list[int]  # char index in `formatted` where the user's message begins
    content_ends: list[int]

    @property
    def pad(self) -> list[int]:
        """Number of pad tokens on the left of each row."""
        L = self.tokens.shape[1]
        return [L - n for n in self.lengths]


@dataclass
class ChatModel:
    """A chat model ready for the toolkit: the bridge, its tokenizer and refusal/compliance tokens."""

    bridge: "object"
    tokenizer: "object"
    name: str
    refusal_token_ids: list[int]
    compliance_token_ids: list[int]
    meta: dict = field(default_factory=dict)  # safety_heads.json of an organism, else {}
    # whether the key/value cache held the prompt after a prompt pass (None: not yet checked);
    # interp.generation falls back to uncached generation when it did not
    cache_works: bool | None = None

    # ------------------------------------------------------------ shape facts
    @property
    def cfg(self):
        return self.bridge.cfg

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.bridge.cfg.n_heads)

    @property
    def d_head(self) -> int:
        return int(self.bridge.cfg.d_head)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    @property
    def kind(self) -> str:
        """'organism', 'r2d' (reasoning organism), 'smollm2' (the safety-tuned SmolLM2) or 'hub' for any other model."""
        return self.meta.get("kind", "hub")

    # ------------------------------------------------------------ formatting
    def format(self, text: str, system: str | None = None) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: PromptSet | Sequence[str] | Sequence[Prompt], truncate: bool = False,
               max_len: int | None = None) -> EncodedBatch:
        """Chat-format and tokenize with left padding.

        The template's own BOS is kept and none is added (no double BOS). A prompt longer than the
        model's context is an error unless `truncate=True`, which keeps the last tokens.
        """
        prompt_texts = texts(prompts)
        if not prompt_texts:
            raise InputError("no prompts given: pass a non-empty list of prompts or a PromptSet")
        limit = min(max_len or self.n_ctx, self.n_ctx)
        ids, offs, starts, ends, formatted = [], [], [], [], []
        for i, t in enumerate(prompt_texts):
            f = self.format(t)
            start = f.rfind(t)
            if start < 0:  # template rewrote the text (e.g. stripped it): locate the stripped form
                start = f.rfind(t.strip())
            enc = self.tokenizer(f, add_special_tokens=False, return_offsets_mapping=True)
            tok, off = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
            if len(tok) > limit:
                if not truncate:
                    raise InputError(
                        f"prompt {i} is {len(tok)} tokens after chat formatting, longer than the model's context of "
                        f"{limit}; shorten it or pass truncate=True to keep its last {limit} tokens")
                tok, off = tok[-limit:], off[-limit:]
            ids.append(tok)
            offs.append(off)
            starts.append(start)
            ends.append(start + len(t.strip()) if start >= 0 else -1)
            formatted.append(f)
        L = max(map(len, ids))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        tokens = torch.full((len(ids), L), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), L), dtype=torch.long)
        for r, tok in enumerate(ids):
            tokens[r, L - len(tok):] = torch.tensor(tok, dtype=torch.long)
            mask[r, L - len(tok):] = 1
        return EncodedBatch(tokens.to(self.device), mask.to(self.device), [len(t) for t in ids], formatted, offs, starts, ends)

    def post_instruction_positions(self, batch: EncodedBatch) -> list[list[int]]:
        """Per prompt, the unpadded indices of the template tokens after the user's message."""
        out = []
        for offs, end in zip(batch.offsets, batch.content_ends):
            out.append([j for j, (a, b) in enumerate(offs) if a >= end and b > a] or [len(offs) - 1])
        return out

    def token_span(self, batch: EncodedBatch, row: int, char_span: tuple[int, int]) -> tuple[int, int]:
        """Unpadded token indices [start, end) covering a character span of the user's message."""
        base = batch.content_starts[row]
        a, b = base + char_span[0], base + char_span[1]
        toks = [j for j, (s, e) in enumerate(batch.offsets[row]) if e > a and s < b and e > s]
        if not toks:
            raise InputError(f"span {char_span} of prompt {row} covers no token; check the prompt's spans")
        return toks[0], toks[-1] + 1

    def to_str_tokens(self, tokens: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(tokens))

    def require_direct_answers(self) -> "ChatModel":
        """Refuse a reasoning (R2D) organism where refusal is read from the first answer token: its
        answers open with reasoning steps and pivot tokens."""
        if self.kind == "r2d":
            from interp.r2d.model import require_kind

            require_kind(self, "organism")
        return self

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "n_kv_heads": int(getattr(self.cfg, "n_key_value_heads", None) or self.n_heads), "d_head": self.d_head,
                "d_model": self.d_model, "n_ctx": self.n_ctx,
                "refusal_tokens": self.to_str_tokens(self.refusal_token_ids),
                "compliance_tokens": self.to_str_tokens(self.compliance_token_ids)}


def texts(prompts) -> list[str]:
    """The message texts of a PromptSet or a list of strings or Prompts."""
    if isinstance(prompts, PromptSet):
        return prompts.texts
    if isinstance(prompts, str):
        raise InputError("pass a list of prompts, not a single string (wrap it: [text])")
    return [p.text if isinstance(p, Prompt) else str(p) for p in prompts]


def first_token_ids(tokenizer, phrases: Sequence[str]) -> list[int]:
    """Token ids that start each phrase, as the first token of a response (with and without a space)."""
    ids: list[int] = []
    for p in phrases:
        for variant in (p, " " + p):
            enc = tokenizer(variant, add_special_tokens=False).input_ids
            if enc and enc[0] != tokenizer.unk_token_id and enc[0] not in ids:
                ids.append(enc[0])
    return ids


def _looks_like_path(s: str) -> bool:
    return s.startswith((".", "/", "~")) or os.sep in s.strip("/") and s.count("/") > 1 or s.endswith(os.sep)


def resolve_model_dir(name_or_dir: str) -> tuple[str, bool]:
    """Map 'organism[:variant]' to the packaged weights; say whether the result is local."""
    m = re.fullmatch(r"organism(?::(\w+))?", name_or_dir)
    if m:
        variant = m.group(1) or "gqa"
        if variant not in ORGANISM_VARIANTS:
            raise ModelLoadError(f"unknown organism variant {variant!r}; choose one of {ORGANISM_VARIANTS}")
        d = ORGANISM_DIR / variant
        if not (d / "config.json").exists():
            raise ModelLoadError(f"organism variant {variant!r} is not built at {d}; "
                                 f"train it with: safety-heads organism train --variant {variant} --out {d}")
        return str(d), True
    from interp import hub

    if hub.canonical(name_or_dir) is not None:  # a registry model (e.g. smollm2-135m-instruct): converted once, cached
        return str(hub.model_dir(name_or_dir)), True
    p = Path(name_or_dir).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelLoadError(f"{p} is not a Hugging Face model directory (no config.json in it)")
        return str(p), True
    if _looks_like_path(name_or_dir):
        raise ModelLoadError(f"model path {name_or_dir!r} does not exist; pass an existing local directory or a hub name")
    return name_or_dir, False


def load_model(name_or_dir: str = "organism", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               chat_template: str | None = None, tokenizer=None, refusal_phrases: Sequence[str] | None = None,
               compliance_phrases: Sequence[str] | None = None) -> ChatModel:
    """Load a chat model by hub name or local directory and wrap it for the toolkit.

    `chat_template` (a Jinja string or a path to a file holding one) supplies a template for a
    tokenizer that has none; `tokenizer` replaces the directory's tokenizer entirely.
    """
    from transformers import AutoTokenizer

    from interp.organism import smollm2

    hf_model = None
    adapter_dir = smollm2.adapter_dir_for(name_or_dir)
    if adapter_dir is not None:  # organism:smollm2: the base model with its safety adapter merged in
        hf_model, tok, meta = smollm2.merged_model(adapter_dir)
        path, local = str(smollm2.base_dir(meta["base"])), True
        tokenizer = tokenizer if tokenizer is not None else tok
    else:
        path, local = resolve_model_dir(name_or_dir)
        meta = {}
    if local and hf_model is None and (Path(path) / "safety_heads.json").exists():
        meta = json.loads((Path(path) / "safety_heads.json").read_text())
    if tokenizer is None:
        if local and not any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise ModelLoadError(f"{path} has no tokenizer (no tokenizer.json / tokenizer_config.json / tokenizer.model); "
                                 "save the tokenizer there or pass tokenizer=")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1")
        except OSError as e:
            raise _offline_error(name_or_dir, e) from None
    if chat_template is not None:
        if Path(chat_template).exists():
            chat_template = Path(chat_template).read_text()
        tokenizer.chat_template = chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"the tokenizer of {name_or_dir!r} has no chat template; pass one with "
                             "chat_template=<jinja string or file> (CLI: --chat-template FILE)")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    from transformer_lens import TransformerBridge

    try:
        if hf_model is not None:
            hf_model = hf_model.to(device=device, dtype=dtype)
        bridge = TransformerBridge.boot_transformers(path, device=str(device), dtype=dtype, tokenizer=tokenizer, hf_model=hf_model)
    except OSError as e:
        raise _offline_error(name_or_dir, e) from None
    bridge.eval()
    refusal = first_token_ids(tokenizer, refusal_phrases or meta.get("refusal_first_tokens") or DEFAULT_REFUSAL_PHRASES)
    compliance = first_token_ids(tokenizer, compliance_phrases or meta.get("compliance_first_tokens") or DEFAULT_COMPLIANCE_PHRASES)
    compliance = [t for t in compliance if t not in refusal]
    if not refusal or not compliance:
        raise ModelLoadError(f"could not find refusal/compliance first tokens in the vocabulary of {name_or_dir!r}; "
                             "pass refusal_phrases= and compliance_phrases=")
    from interp import hub

    name = f"organism:{meta.get('variant', 'gqa')}" if meta.get("kind") in ("organism", "r2d", "smollm2") and name_or_dir.startswith("organism") else name_or_dir
    name = hub.canonical(name) or name
    return ChatModel(bridge, tokenizer, name, refusal, compliance, meta)


def _offline_error(name: str, e: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {name!r}: it is not a local directory and could not be fetched ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200]}). Without a hub connection, download it elsewhere "
        f"(huggingface-cli download {name} --local-dir DIR), copy DIR here and pass --model DIR.")


_texts = texts  # old private name, still imported by some modules
