"""Ways in for what a user already holds: `ChatModel.from_bridge` / `ChatModel.from_hf` for a model
in memory, and a direction saved by andyrdt/refusal_direction (`direction.pt` + its metadata)."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import ArtifactError, InputError
from interp.model import ChatModel


@pytest.fixture
def tiny_llama(organism):
    """A Llama-style model built here, in memory, with the organism's tokenizer (a fresh one per
    test: a bridge wraps the model's modules in place)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = organism.tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


def test_from_bridge_wraps_a_bridge_the_user_built(tiny_llama, organism):
    from transformer_lens import TransformerBridge

    from interp.hooks import count_hooks
    from interp.scoring import refusal_score

    bridge = TransformerBridge.boot_transformers("my-llama", hf_model=tiny_llama, tokenizer=organism.tokenizer)
    model = ChatModel.from_bridge(bridge, organism.tokenizer, refusal_phrases=["i cannot"], compliance_phrases=["sure"])
    assert model.name == "my-llama" and (model.n_layers, model.n_heads, model.d_model) == (2, 4, 64)
    assert model.refusal_token_ids == [organism.tokenizer.convert_tokens_to_ids("i")]
    assert model.compliance_phrases == ["sure"]
    # the toolkit works on it: the refusal score is the log-odds of those tokens, read from the bridge
    batch = model.encode(["how do i make a bomb"])
    with torch.no_grad():
        logits = bridge(batch.tokens, attention_mask=batch.attention_mask)[0, -1]
    lp = logits.log_softmax(-1)
    expected = torch.logsumexp(lp[model.refusal_token_ids], 0) - torch.logsumexp(lp[model.compliance_token_ids], 0)
    assert torch.allclose(refusal_score(model, ["how do i make a bomb"])[0], expected, atol=1e-4)
    assert count_hooks(model) == 0


def test_from_hf_matches_the_plain_model_and_load_model(tiny_llama, organism, tmp_path):
    from interp.model import load_model

    tiny_llama.save_pretrained(tmp_path)  # the same weights, for load_model below
    organism.tokenizer.save_pretrained(tmp_path)
    tokens = organism.encode(["tell me a story"]).tokens
    with torch.no_grad():
        plain = tiny_llama(input_ids=tokens).logits
    model = ChatModel.from_hf(tiny_llama, organism.tokenizer, refusal_phrases=["i cannot"], compliance_phrases=["sure"],
                              name="in-memory")
    with torch.no_grad():
        assert torch.allclose(model.bridge(tokens), plain, atol=1e-5)
    with pytest.raises(InputError, match="already inside a TransformerBridge"):
        ChatModel.from_hf(tiny_llama, organism.tokenizer)
    # loaded from disk through load_model: the same model, the same token sets
    loaded = load_model(str(tmp_path), refusal_phrases=["i cannot"], compliance_phrases=["sure"])
    assert loaded.fingerprint == model.fingerprint
    assert (loaded.refusal_token_ids, loaded.compliance_token_ids) == (model.refusal_token_ids, model.compliance_token_ids)


def test_from_bridge_checks_like_load_model(tiny_llama, organism):
    import copy

    from interp.errors import ModelLoadError

    with pytest.raises(InputError, match="not in the vocabulary"):
        ChatModel.from_hf(tiny_llama, organism.tokenizer, refusal_phrases=["zzyzx"])
    bare = copy.deepcopy(organism.tokenizer)
    bare.chat_template = None
    with pytest.raises(ModelLoadError, match="has no chat template"):
        ChatModel.from_hf(tiny_llama, bare, name="no-template")
    template = "{% for m in messages %}<|user|> {{ m['content'] }} {% endfor %}<|assistant|>"
    model = ChatModel.from_hf(tiny_llama, bare, refusal_phrases=["i cannot"], compliance_phrases=["sure"],
                              chat_template=template)
    assert model.format("hello") == "<|user|> hello <|assistant|>"


# ---------------------------------------------------------------- refusal_direction's direction.pt
def test_refusal_direction_pt_loads_into_a_direction(organism, tmp_path):
    from interp.direction_files import load_refusal_direction, read_direction
    from interp.intervention import Intervention

    vec = torch.randn(organism.d_model, dtype=torch.bfloat16)  # the run's dtype, not normalised
    torch.save(vec, tmp_path / "direction.pt")
    (tmp_path / "direction_metadata.json").write_text(json.dumps({"pos": -2, "layer": 3}, indent=4))
    d = read_direction(tmp_path / "direction.pt", model=organism)
    assert (d.layer, d.position, d.site) == (3, -2, "resid_pre")
    assert torch.equal(d.vector, vec.float()) and d.vector.dtype == torch.float32
    assert "assumed" not in d.meta
    # it is the one direction type: it ablates like any other
    with Intervention.ablate_direction(d).apply(organism):
        pass
    # without the metadata file: layer 0, last position, and the assumption is recorded
    (tmp_path / "direction_metadata.json").unlink()
    bare = load_refusal_direction(tmp_path / "direction.pt")
    assert (bare.layer, bare.position) == (0, -1) and bare.meta["assumed"] == {"layer": 0, "pos": -1}


def test_refusal_direction_bad_files(organism, tmp_path):
    from interp.direction_files import load_refusal_direction

    torch.save(torch.randn(64), tmp_path / "small.pt")
    with pytest.raises(ArtifactError, match="64 dimensions, organism:gqa a residual width of 128"):
        load_refusal_direction(tmp_path / "small.pt", model=organism)
    torch.save(torch.randn(2, 128), tmp_path / "two.pt")
    with pytest.raises(ArtifactError, match=r"holds \(2, 128\); a direction is one 1-D float tensor"):
        load_refusal_direction(tmp_path / "two.pt")
    # an arbitrary pickled object is never unpickled (weights_only=True)
    torch.save({"v": torch.randn(128), "obj": object}, tmp_path / "pickled.pt")
    with pytest.raises(ArtifactError, match="only plain tensors are read"):
        load_refusal_direction(tmp_path / "pickled.pt")
    torch.save(torch.randn(128), tmp_path / "direction.pt")
    (tmp_path / "direction_metadata.json").write_text(json.dumps({"pos": -1, "layer": 9}))
    with pytest.raises(ArtifactError, match="layer 9 is not a block of organism:gqa"):
        load_refusal_direction(tmp_path / "direction.pt", model=organism)
