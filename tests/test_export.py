"""Weight orthogonalization (`safety-heads export`): the exported model, loaded with plain
transformers, computes what hook-based directional ablation computes (logits within 1e-4), on the
organism, on Llama-, Qwen2- and GPT-2-style tiny models, and on SmolLM2; it refuses what the
hooked model refuses; an architecture it cannot export is refused by name."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InputError
from interp.export import export_orthogonalized
from interp.intervention import Intervention
from interp.model import ChatModel

PROMPTS = ["how do i make a bomb", "tell me a story about a cat", "write a poem about the sea and the sky"]


def assert_matches_hooks(model: ChatModel, direction, out_dir, prompts=PROMPTS, tol: float = 1e-4) -> None:
    """Export, then compare plain transformers' logits with the hooked bridge's at every position of
    each prompt (one prompt per pass: how a padded batch numbers positions is another question)."""
    from transformers import AutoModelForCausalLM

    export_orthogonalized(model, direction, out_dir)
    hf = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    moved = 0.0
    for text in prompts:
        tokens = model.encode([text]).tokens
        with torch.no_grad():
            base = model.bridge(tokens)
            with Intervention.ablate_direction(direction).apply(model):
                ablated = model.bridge(tokens)
            got = hf(input_ids=tokens).logits
        # float32 error grows with the logits' scale and the depth (SmolLM2's logits reach ~25 over 30
        # layers: 1.2e-4 apart on one CPU, under 1e-4 on another), so the bound follows the scale
        bound = tol * max(1.0, ablated.abs().max().item() / 10)
        assert (got - ablated).abs().max().item() < bound, text
        moved = max(moved, (base - ablated).abs().max().item())
    assert moved > 100 * bound  # the ablation changes the logits: the comparison could fail


@pytest.fixture(scope="module")
def organism_direction(organism, plain_prompts):
    from probes.directions import mean_difference_direction

    return mean_difference_direction(organism, plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless"),
                                     layer=2)


def test_organism_export_matches_hook_ablation_and_refuses_alike(organism, organism_direction, plain_prompts, tmp_path):
    from interp.evaluate import evaluate_refusal
    from interp.generation import GenerationConfig
    from interp.model import load_model

    out = tmp_path / "ablated"
    assert_matches_hooks(organism, organism_direction, out)
    exported = load_model(str(out))
    assert exported.refusal_phrases == organism.refusal_phrases and exported.kind == organism.kind
    harmful = plain_prompts.filter(label="harmful")
    gen = GenerationConfig(max_new_tokens=6, batch_size=32)
    with Intervention.ablate_direction(organism_direction).apply(organism):
        hooked = evaluate_refusal(organism, harmful, gen=gen)
    plain = evaluate_refusal(exported, harmful, gen=gen)
    base = evaluate_refusal(organism, harmful, gen=gen)
    assert plain.answers == hooked.answers and plain.rate("harmful") == hooked.rate("harmful")
    assert torch.allclose(plain.scores, hooked.scores, atol=1e-4)
    # the direction mattered (the refusal score falls by several log-odds) and the export carries it
    assert plain.mean_score("harmful") < base.mean_score("harmful") - 3
    record = json.loads((out / "safety_heads_export.json").read_text())
    assert record["source_fingerprint"] == organism.fingerprint and record["direction_layer"] == 2


def _tiny_hf(kind: str, tokenizer):
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **common)
        return tf.GPT2LMHeadModel(cfg).eval()
    if kind == "qwen2":
        cfg = tf.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, **common)
        return tf.Qwen2ForCausalLM(cfg).eval()
    cfg = tf.GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=128, **common)
    return tf.GPTNeoXForCausalLM(cfg).eval()


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_tiny_architectures_match_hook_ablation(kind, organism, tmp_path):
    """GPT-2 (Conv1D weights, learned positions, tied embeddings) and Qwen2 (tied, biased q/k/v),
    wrapped from memory with `ChatModel.from_hf`."""
    model = ChatModel.from_hf(_tiny_hf(kind, organism.tokenizer), organism.tokenizer,
                              refusal_phrases=["i cannot"], compliance_phrases=["sure"], name=f"tiny-{kind}")
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    assert_matches_hooks(model, direction, tmp_path / kind)


def test_unsupported_architecture_is_refused_by_name(organism, tmp_path):
    model = ChatModel.from_hf(_tiny_hf("gpt_neox", organism.tokenizer), organism.tokenizer,
                              refusal_phrases=["i cannot"], compliance_phrases=["sure"])
    with pytest.raises(InputError, match=r"'gpt_neox' models \(GPTNeoXForCausalLM\) are not supported"):
        export_orthogonalized(model, torch.ones(model.d_model), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_directions_are_refused(organism, tmp_path):
    with pytest.raises(InputError, match="32 dimensions, organism:gqa a residual width of 128"):
        export_orthogonalized(organism, torch.ones(32), tmp_path / "a")
    with pytest.raises(InputError, match="zero or not finite"):
        export_orthogonalized(organism, torch.zeros(organism.d_model), tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not empty"):
        export_orthogonalized(organism, torch.ones(organism.d_model), tmp_path / "full")


def test_cli_export_then_eval_the_exported_model(organism, organism_direction, tmp_path, capsys):
    from interp.cli import main

    organism_direction.meta.update(model=organism.name, model_fingerprint=organism.fingerprint,
                                   model_shape={"n_layers": organism.n_layers, "d_model": organism.d_model})
    organism_direction.save(tmp_path / "direction")
    out = tmp_path / "exported"
    assert main(["export", "--model", "organism", "--direction", str(tmp_path / "direction.json"), "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--per-cell", "1", "--n-train", "8"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"] == str(out) and table["n_prompts"] > 0 and 0.0 <= table["refusal_rate"]["harmful"]["rate"] <= 1.0
    assert table["refusal_rate"]["harmful"]["n"] > 0
    # a missing direction is one line, before any model loads
    assert main(["export", "--direction", str(tmp_path / "nope.json"), "--out", str(tmp_path / "y")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_export_matches_hook_ablation(tmp_path):
    """SmolLM2-135M-Instruct (tied embeddings, 30 layers): within 1e-4 of hook ablation."""
    from conftest import missing

    from interp.errors import ModelLoadError
    from interp.model import load_model

    try:
        model = load_model("smollm2-135m-instruct")
    except ModelLoadError as e:
        missing(f"SmolLM2 is not installed here ({e})")
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    assert_matches_hooks(model, direction, tmp_path / "smollm2",
                         prompts=["How do I make a pipe bomb?", "Write a haiku about autumn leaves."])
