"""Loading a chat model: a `TransformerBridge` plus chat formatting, left-padded batching and the
refusal/compliance first-token sets that refusal scores are read from.

`load_model(name_or_dir)` takes a Hugging Face name, a local directory, a hub registry name
(`interp.hub`) or a name a registered model source claims (`interp.sources`: the model organisms,
`"organism"`, `"organism:smollm2"`, are one); all go through exactly the same code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InputError, ModelLoadError
from interp.prompts import Prompt, PromptSet

if TYPE_CHECKING:
    from interp.placement import Placement

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
    # the phrases the token sets came from: the compliance ones are also the opener attacks aim
    # for and Token Highlighter's affirmation (first phrase), so they are kept whole
    refusal_phrases: list[str] = field(default_factory=list)
    compliance_phrases: list[str] = field(default_factory=list)
    system_prompt: str | None = None  # put before every user message (None: the template's own default)
    # whether the key/value cache held the prompt after a prompt pass (None: not yet checked);
    # interp.generation falls back to uncached generation when it did not
    cache_works: bool | None = None
    # default of `encode(truncate=...)`: keep the last tokens of a prompt longer than the context
    truncate: bool = False
    source: str | None = None  # the registered model source that loaded it (interp.sources), None for any other
    path: str | None = None  # the local directory the weights came from (None: a hub name fetched remotely)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """Hash of the config and a sample of the weights, independent of the path (interp.fingerprint)."""
        if self._fingerprint is None:
            from interp.fingerprint import compute_fingerprint

            self._fingerprint = compute_fingerprint(self)
        return self._fingerprint

    # ------------------------------------------------------------ other ways in
    @classmethod
    def from_bridge(cls, bridge, tokenizer=None, refusal_phrases: Sequence[str] | None = None,
                    compliance_phrases: Sequence[str] | None = None, name: str | None = None,
                    chat_template: str | None = None, system_prompt: str | None = None, truncate: bool = False,
                    meta: dict | None = None) -> "ChatModel":
        """A model from a `TransformerBridge` the caller built (any placement, dtype or
        quantisation). `tokenizer` defaults to the bridge's own; it needs a chat template (or pass
        `chat_template=`, a Jinja string or file). The phrases and the rest as in `load_model`."""
        tokenizer = tokenizer if tokenizer is not None else getattr(bridge, "tokenizer", None)
        if tokenizer is None:
            raise InputError("from_bridge: the bridge carries no tokenizer; pass tokenizer=")
        name = name or str(getattr(bridge.cfg, "model_name", None) or "bridge")
        template = read_chat_template(chat_template) if chat_template is not None else None
        parts = chat_parts(tokenizer, name, template, refusal_phrases, compliance_phrases, system_prompt, meta)
        bridge.eval()
        return cls(bridge, name=name, meta=dict(meta or {}), system_prompt=system_prompt, truncate=truncate, **parts)

    @classmethod
    def from_hf(cls, model, tokenizer, refusal_phrases: Sequence[str] | None = None,
                compliance_phrases: Sequence[str] | None = None, name: str | None = None, **kw) -> "ChatModel":
        """A model from a Hugging Face causal LM already in memory (on a GPU, quantised, fine-tuned
        in this session): wrapped in a `TransformerBridge` where it is, with its own weights and
        placement (attention is switched to the eager implementation, so attention hooks fire).
        The bridge wraps the model's modules in place: `model` becomes part of the returned
        `ChatModel` (use `from_bridge` to wrap the same bridge again). Other keywords as in
        `from_bridge`."""
        from transformer_lens import TransformerBridge

        if any("_original_component" in n for n, _ in model.named_modules()):
            raise InputError("from_hf: this model is already inside a TransformerBridge (its modules are wrapped); pass "
                             "that bridge to ChatModel.from_bridge, or a freshly loaded model")
        name = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        template = kw.get("chat_template")  # the tokenizer and phrases are checked before the model is wrapped
        chat_parts(tokenizer, name, read_chat_template(template) if template is not None else None, refusal_phrases,
                   compliance_phrases, kw.get("system_prompt"), kw.get("meta"))
        dtype = getattr(model, "dtype", None)
        bridge = TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=tokenizer,
                                                     **({"dtype": dtype} if isinstance(dtype, torch.dtype) else {}))
        return cls.from_bridge(bridge, tokenizer, refusal_phrases, compliance_phrases, name=name, **kw)

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
        """Where inputs go: the embedding's device (on a split model, later layers may live elsewhere)."""
        dev = getattr(self.bridge.cfg, "device", None)
        if dev is not None and str(dev) != "meta":
            return torch.device(dev)
        return next(p.device for p in self.bridge.parameters() if p.device.type != "meta")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights (what added vectors are cast to)."""
        return next(self.bridge.parameters()).dtype

    @property
    def split(self) -> bool:
        """True when the weights are spread over several devices, CPU memory or disk."""
        return int(getattr(self.bridge.cfg, "n_devices", 1) or 1) > 1

    @property
    def kind(self) -> str:
        """'organism', 'r2d' (reasoning organism), 'smollm2' (the safety-tuned SmolLM2) or 'hub' for any other model."""
        return self.meta.get("kind", "hub")

    # ------------------------------------------------------------ formatting
    def format(self, text: str, system: str | None = None) -> str:
        system = system if system is not None else self.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: PromptSet | Sequence[str] | Sequence[Prompt], truncate: bool | None = None,
               max_len: int | None = None, indices: Sequence[int] | None = None) -> EncodedBatch:
        """Chat-format and tokenize with left padding.

        The template's own BOS is kept and none is added (no double BOS). A prompt longer than the
        model's context is an error unless `truncate=True` (default: the model's `truncate`), which
        keeps the last tokens. `indices`: the caller's index of each prompt, for error messages
        (callers that sort prompts by length pass where each came from).
        """
        prompt_texts = texts(prompts)
        if not prompt_texts:
            raise InputError("no prompts given: pass a non-empty list of prompts or a PromptSet")
        truncate = self.truncate if truncate is None else truncate
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
                who = indices[i] if indices is not None else i
                if not truncate:
                    raise InputError(
                        f"prompt {who} ({t[:40]!r}...) is {len(tok)} tokens after chat formatting, longer than the "
                        f"model's context of {limit}; shorten it, or pass truncate=True (CLI: --truncate) to keep its "
                        f"last {limit} tokens")
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

    def token_lengths(self, prompts) -> list[int]:
        """Tokens of each prompt after chat formatting, at most the context (what `encode` keeps)."""
        return [min(len(self.tokenizer(self.format(t), add_special_tokens=False)["input_ids"]), self.n_ctx)
                for t in texts(prompts)]

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
        return require_kind(self, "organism") if self.kind == "r2d" else self

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "kind": self.kind, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "n_kv_heads": int(getattr(self.cfg, "n_key_value_heads", None) or self.n_heads), "d_head": self.d_head,
                "d_model": self.d_model, "n_ctx": self.n_ctx,
                "refusal_tokens": self.to_str_tokens(self.refusal_token_ids),
                "compliance_tokens": self.to_str_tokens(self.compliance_token_ids),
                "refusal_phrases": list(self.refusal_phrases), "compliance_phrases": list(self.compliance_phrases),
                "system_prompt": self.system_prompt,
                **{k: self.meta[k] for k in ("placement", "bridge_check", "base_model") if k in self.meta}}


ORGANISM_KINDS = ("r2d", "organism")


def require_kind(model: ChatModel, kind: str) -> ChatModel:
    """Raise ModelLoadError unless `model` is an organism of `kind` ('r2d' or 'organism')."""
    if kind not in ORGANISM_KINDS:
        raise InputError(f"unknown organism kind {kind!r}; choose one of {ORGANISM_KINDS}")
    if model.kind == kind:
        return model
    what = {"r2d": "an R2D organism (kind 'r2d')", "organism": "a base organism (kind 'organism')"}
    got = what.get(model.kind, f"a model of kind {model.kind!r}")
    fix = {
        "r2d": "pass an R2D checkpoint ('organism:r2d', or train one with: safety-heads organism train --r2d --out DIR)",
        "organism": "its answers start with reasoning steps and pivot tokens, so first-token refusal scores and the "
                    "plain judge do not apply; load it with interp.r2d.model.load_r2d() / `safety-heads r2d eval`, "
                    "or pass the base organism ('organism')",
    }[kind]
    raise ModelLoadError(f"{model.name} is {got} per its safety_heads.json, but {what[kind]} is expected here: {fix}")


def texts(prompts) -> list[str]:
    """The message texts of a PromptSet or a list of strings or Prompts."""
    if isinstance(prompts, PromptSet):
        return prompts.texts
    if isinstance(prompts, str):
        raise InputError("pass a list of prompts, not a single string (wrap it: [text])")
    return [p.text if isinstance(p, Prompt) else str(p) for p in prompts]


def check_phrases(tokenizer, phrases: Sequence[str], flag: str, model_name: str) -> list[str]:
    """The user's phrases, each checked to be made of known tokens (a word-level vocabulary maps an
    unknown word to one `<unk>` token, and a refusal score read from `<unk>` means nothing)."""
    phrases = [p.strip() for p in phrases if p.strip()]
    if not phrases:
        raise InputError(f"{flag} is empty; pass comma-separated phrases the model opens its answers with")
    unk = tokenizer.unk_token_id
    for p in phrases:
        ids = tokenizer(p, add_special_tokens=False).input_ids
        if not ids or (unk is not None and unk in ids):
            words = [w for w in p.split() if unk in (tokenizer(w, add_special_tokens=False).input_ids or [unk])]
            raise InputError(f"{flag}: {p!r} is not in the vocabulary of {model_name!r} (unknown: "
                             f"{', '.join(map(repr, words or [p]))}); pass phrases made of its own words")
    return phrases


def first_token_ids(tokenizer, phrases: Sequence[str]) -> list[int]:
    """Token ids that start each phrase, as the first token of a response (with and without a space)."""
    ids: list[int] = []
    for p in phrases:
        for variant in (p, " " + p):
            enc = tokenizer(variant, add_special_tokens=False).input_ids
            if enc and enc[0] != tokenizer.unk_token_id and enc[0] not in ids:
                ids.append(enc[0])
    return ids


# a made-up user message: a chat template must put it into the formatted prompt
TEMPLATE_PROBE = "template check: is this message 4711 here?"


def read_chat_template(value: str) -> str:
    """The template text of `value`: the contents of a file, or `value` itself when it is a Jinja
    template. A value that is neither (a mistyped file name) is an error, not a template."""
    try:
        is_file = Path(value).expanduser().is_file()
    except OSError:  # too long or otherwise impossible as a file name: an inline template
        is_file = False
    if is_file:
        text = Path(value).expanduser().read_text()
        if not text.strip():
            raise InputError(f"chat template file {value} is empty; put a Jinja chat template in it")
        return text
    if "{{" in value or "{%" in value:
        return value
    raise InputError(f"chat template {value!r} is neither an existing file nor a Jinja template (no '{{{{' or "
                     "'{%' in it); check the file name, or pass the template text itself")


def check_chat_template(tokenizer, source: str) -> None:
    """Render a test message with the tokenizer's template; refuse a template that fails or drops it."""
    messages = [{"role": "user", "content": TEMPLATE_PROBE}]
    try:
        out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # jinja2 syntax/undefined errors, raise_exception() in the template
        raise InputError(f"the chat template {source} does not render a user message "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); fix the template") from None
    if not isinstance(out, str) or TEMPLATE_PROBE not in out:
        raise InputError(f"the chat template {source} drops the user's message: rendering "
                         f"[{{'role': 'user', 'content': {TEMPLATE_PROBE!r}}}] gave {str(out)[:120]!r}. A chat template "
                         "must insert each message's content (e.g. {{ message['content'] }})")


def check_device(device: str | torch.device) -> torch.device:
    """A device this torch can use, or a clear error (a CPU-only build asked for cuda, no mps, ...)."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if torch.version.cuda is None:
            raise InputError(f"device {device!r}: this torch ({torch.__version__}) was built without CUDA; use "
                             "--device cpu, or install a CUDA build of torch (https://pytorch.org/get-started)")
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: torch has CUDA support but sees no GPU (driver or "
                             "CUDA_VISIBLE_DEVICES); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif d.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {device!r}: Apple's MPS backend is not available on this machine or torch "
                             "build; use --device cpu")
    elif d.type != "cpu":
        backend = getattr(torch, d.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise InputError(f"device {device!r} is not available to this torch build; use cpu, cuda or mps")
    return d


def check_model_files(path: str | Path) -> None:
    """Refuse a local model directory whose config.json or safetensors weights are broken, naming
    the file, before transformers fails on it with an error about something else."""
    d = Path(path)
    cfg = d / "config.json"
    try:
        parsed = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{cfg} is not valid JSON ({e}); the file is broken: restore it from where the model "
                             "came from (re-download it, or retrain the organism)") from None
    if not isinstance(parsed, dict) or not (parsed.get("model_type") or parsed.get("architectures")):
        raise ModelLoadError(f"{cfg} names no model_type or architectures; it is not a Hugging Face model config: restore it from "
                             "where the model came from")
    for f in sorted(d.glob("*.safetensors")):
        problem = _safetensors_problem(f)
        if problem:
            raise ModelLoadError(f"weights file {f} is broken ({problem}); re-download or recopy it "
                                 "(or retrain the organism)")


def _safetensors_problem(f: Path) -> str | None:
    """Why a safetensors file cannot be read in full (truncated, bad header), or None."""
    size = f.stat().st_size
    try:
        with open(f, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return f"header of {n} bytes in a file of {size}: truncated"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        return f"unreadable header: {e}"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        return "malformed header"
    if 8 + n + end > size:
        return f"the header describes {8 + n + end} bytes but the file has {size}: truncated"
    return None


def _looks_like_path(s: str) -> bool:
    return s.startswith((".", "/", "~")) or os.sep in s.strip("/") and s.count("/") > 1 or s.endswith(os.sep)


def resolve_model_dir(name_or_dir: str) -> tuple[str, bool]:
    """Map a hub registry name or a local directory to a directory (a remote name stays as it is);
    say whether the result is local. Names a model source claims never get here (`load_model`)."""
    from interp import hub

    if hub.canonical(name_or_dir) is not None:  # a registry model (e.g. smollm2-135m-instruct): converted once, cached
        return str(hub.model_dir(name_or_dir)), True
    p = Path(name_or_dir).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelLoadError(f"{p} is not a Hugging Face model directory (no config.json in it)")
        check_model_files(p)
        return str(p), True
    if _looks_like_path(name_or_dir):
        raise ModelLoadError(f"model path {name_or_dir!r} does not exist; pass an existing local directory or a hub name")
    return name_or_dir, False


def load_model(name_or_dir: str = "organism", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               chat_template: str | None = None, tokenizer=None, refusal_phrases: Sequence[str] | None = None,
               compliance_phrases: Sequence[str] | None = None, system_prompt: str | None = None,
               truncate: bool = False, placement: "Placement | None" = None, skip_bridge_check: bool = False) -> ChatModel:
    """Load a chat model by hub name or local directory and wrap it for the toolkit.

    `chat_template` (a Jinja string or a path to a file holding one) supplies a template for a
    tokenizer that has none; `tokenizer` replaces the directory's tokenizer entirely.
    `refusal_phrases` / `compliance_phrases` (CLI `--refusal-phrases` / `--compliance-phrases`):
    how the model opens a refusal / a compliant answer; each must be made of known tokens. By
    default the model's `safety_heads.json` names them, else the common openers of chat models.
    `system_prompt` is put before every user message. `truncate`: prompts longer than the context
    keep their last tokens instead of raising (the model's default for every `encode`).
    `placement` (`interp.placement.Placement`) splits the model across devices, CPU memory and
    disk instead of putting it on `device`. The bridge's logits are compared with the plain
    model's on one short prompt (`interp.bridge_check`) and a model it does not reproduce is
    refused; `skip_bridge_check=True` (CLI `--skip-bridge-check`) loads it anyway, recorded in
    `meta["bridge_check"]` and every report's model description.
    """
    from transformers import AutoTokenizer

    from interp import hub
    from interp.sources import resolve_model

    check_device(device)
    template_text = read_chat_template(chat_template) if chat_template is not None else None
    claimed = resolve_model(name_or_dir)  # a name or directory a registered source serves (the organisms)
    if claimed is not None:
        source, resolved = claimed[0].name, claimed[1]
        path, local, hf_model, meta, display = resolved.path, resolved.local, resolved.hf_model, resolved.meta, resolved.name
        if hf_model is not None and placement is not None and placement.split:
            raise InputError(f"{name_or_dir!r} is built in memory and loads on one device; leave out "
                             "--device-map/--max-memory/--offload-folder")
        tokenizer = tokenizer if tokenizer is not None else resolved.tokenizer
    else:
        source, hf_model, meta = None, None, None
        path, local = resolve_model_dir(name_or_dir)
        display = hub.canonical(name_or_dir) or name_or_dir
    if meta is None:
        meta = json.loads((Path(path) / "safety_heads.json").read_text()) if local and (Path(path) / "safety_heads.json").exists() else {}
    if tokenizer is None:
        if local and not any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise ModelLoadError(f"{path} has no tokenizer (no tokenizer.json / tokenizer_config.json / tokenizer.model); "
                                 "save the tokenizer there or pass tokenizer=")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1")
        except OSError as e:
            raise _offline_error(name_or_dir, e) from None
        except Exception as e:  # a config or tokenizer file transformers cannot read
            if not local:
                raise
            raise ModelLoadError(f"could not load the tokenizer in {path} ({type(e).__name__}: {_first_line(e)}); "
                                 "its config.json or tokenizer files are broken: restore them from where the model "
                                 "came from") from None
    parts = chat_parts(tokenizer, name_or_dir, template_text, refusal_phrases, compliance_phrases, system_prompt, meta)
    from transformer_lens import TransformerBridge

    try:
        if hf_model is not None:
            bridge = TransformerBridge.boot_transformers(path, device=str(device), dtype=dtype, tokenizer=tokenizer,
                                                         hf_model=hf_model.to(device=device, dtype=dtype))
        else:
            where = placement.boot_kwargs() if placement is not None and placement.split else {"device": str(device)}
            bridge = TransformerBridge.boot_transformers(path, dtype=dtype, tokenizer=tokenizer, **where)
    except Exception as e:
        if not local:
            if isinstance(e, OSError):
                raise _offline_error(name_or_dir, e) from None
            raise
        if _raised_by_bridge(e):  # transformers read the files; TransformerLens could not wrap the model
            from interp.bridge_check import tl_version

            why = _first_line(e).split(" Available architectures")[0]  # (TransformerLens lists them all)
            raise ModelLoadError(f"TransformerLens {tl_version()} could not wrap the {_model_type(path)} model in {path} "
                                 f"({type(e).__name__}: {why}): the bridge does not support this architecture "
                                 "or configuration. This is not a problem with the model's files; docs/real_models.md "
                                 "lists the architectures that are tested") from None
        # a config that passed the JSON check but describes no model transformers can build, or weights
        # that do not fit it: say which files, not only what transformers tripped over
        raise ModelLoadError(f"could not build a model from {Path(path) / 'config.json'} and its weights "
                             f"({type(e).__name__}: {_first_line(e)}); restore the directory's files from where the "
                             "model came from (re-download it, or retrain the organism)") from None
    bridge.eval()
    if placement is not None and placement.split:
        meta = {**meta, "placement": placement.describe(),
                "device_map": {k: str(v) for k, v in (getattr(bridge.original_model, "hf_device_map", None) or {}).items()}}
    model = ChatModel(bridge, name=display, meta=meta, system_prompt=system_prompt, truncate=truncate,
                      source=source, path=path if local else None, **parts)
    from interp.bridge_check import check_bridge

    model.meta = {**meta, "bridge_check": check_bridge(model, skip_bridge_check)}
    return model


def _raised_by_bridge(e: BaseException) -> bool:
    """Whether the innermost library frame of `e`'s traceback is TransformerLens's (an adapter that
    cannot wrap the model) rather than transformers' or safetensors' (files it cannot read)."""
    import traceback

    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        f = frame.filename.replace(os.sep, "/")
        if "/transformer_lens/" in f:
            return True
        if any(lib in f for lib in ("/transformers/", "/safetensors/", "/huggingface_hub/", "/accelerate/")):
            return False
    return False


def _model_type(path: str) -> str:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
        return f"{(cfg.get('architectures') or ['?'])[0]} ({cfg.get('model_type', '?')})"
    except (OSError, ValueError, AttributeError):
        return "?"


def chat_parts(tokenizer, name: str, template_text: str | None = None, refusal_phrases: Sequence[str] | None = None,
               compliance_phrases: Sequence[str] | None = None, system_prompt: str | None = None,
               meta: dict | None = None) -> dict:
    """What makes a tokenizer a chat model's, for every way in (`load_model`, `ChatModel.from_bridge`,
    `ChatModel.from_hf`): its chat template (checked to render a message), left padding, and the
    refusal / compliance first tokens from the given phrases, else the model's metadata, else the
    common openers. Returns the `ChatModel` fields it sets."""
    meta = meta or {}
    if template_text is not None:
        tokenizer.chat_template = template_text
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"the tokenizer of {name!r} has no chat template; pass one with "
                             "chat_template=<jinja string or file> (CLI: --chat-template FILE)")
    check_chat_template(tokenizer, "given with --chat-template" if template_text is not None else f"of {name!r}")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if refusal_phrases is not None:
        r_phrases = check_phrases(tokenizer, refusal_phrases, "--refusal-phrases (refusal_phrases=)", name)
    else:
        r_phrases = list(meta.get("refusal_phrases") or meta.get("refusal_first_tokens") or DEFAULT_REFUSAL_PHRASES)
    if compliance_phrases is not None:
        c_phrases = check_phrases(tokenizer, compliance_phrases, "--compliance-phrases (compliance_phrases=)", name)
    else:
        c_phrases = list(meta.get("compliance_phrases") or meta.get("compliance_first_tokens") or DEFAULT_COMPLIANCE_PHRASES)
    refusal = first_token_ids(tokenizer, r_phrases)
    compliance = [t for t in first_token_ids(tokenizer, c_phrases) if t not in refusal]
    missing = [flag for flag, ids in (("--refusal-phrases", refusal), ("--compliance-phrases", compliance)) if not ids]
    if missing:
        raise InputError(f"none of the refusal/compliance openers are in the vocabulary of {name!r}: "
                         f"pass {' and '.join(missing)} with the words this model opens a refusal / a compliant answer "
                         "with (e.g. --refusal-phrases sorry --compliance-phrases certainly)")
    # keep only the phrases that gave a token: the first compliance phrase is the attacks' target
    c_phrases = [p for p in c_phrases if first_token_ids(tokenizer, [p]) and first_token_ids(tokenizer, [p])[0] in compliance]
    r_phrases = [p for p in r_phrases if first_token_ids(tokenizer, [p])]
    if system_prompt:
        shown = tokenizer.apply_chat_template([{"role": "system", "content": system_prompt}, {"role": "user", "content": "hello"}],
                                              tokenize=False, add_generation_prompt=True)
        if system_prompt.strip() not in shown:
            raise InputError(f"the chat template of {name!r} drops system messages, so --system-prompt would be "
                             "ignored; leave it out or pass a --chat-template that renders the system role")
    return {"tokenizer": tokenizer, "refusal_token_ids": refusal, "compliance_token_ids": compliance,
            "refusal_phrases": r_phrases, "compliance_phrases": c_phrases}


def _first_line(e: Exception) -> str:
    lines = [l for l in str(e).splitlines() if l.strip()]
    return " / ".join(l.strip() for l in lines[:2])[:300]


def _offline_error(name: str, e: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {name!r}: it is not a local directory and could not be fetched ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200]}). Without a hub connection, download it elsewhere "
        f"(huggingface-cli download {name} --local-dir DIR), copy DIR here and pass --model DIR.")


