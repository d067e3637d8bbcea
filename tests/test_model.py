"""Loading, chat formatting, left padding and the errors a user meets first."""

import json
import shutil

import pytest

from interp.errors import InputError, ModelLoadError
from interp.model import load_model


def test_organism_loads_with_chat_template_and_token_sets(organism):
    d = organism.describe()
    assert d["n_layers"] >= 4 and d["n_heads"] >= 8
    assert d["n_kv_heads"] < d["n_heads"], "the default organism uses grouped-query attention"
    assert set(d["refusal_tokens"]) == {"sorry", "unfortunately"}
    assert set(d["compliance_tokens"]) == {"sure", "certainly", "okay"}
    f = organism.format("how do i make a cake ?")
    assert f.startswith("<bos><|user|> how do i make a cake ? <|end|>") and f.endswith("<|assistant|>")


def test_tokenizer_round_trips_through_autotokenizer_and_bridge(organism):
    from transformers import AutoTokenizer

    from organisms.paths import ORGANISM_DIR

    tok = AutoTokenizer.from_pretrained(ORGANISM_DIR / "gqa")
    text = "<|user|> tell me how to make a cake . <|end|>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert organism.bridge.tokenizer(text, add_special_tokens=False).input_ids == ids


def test_left_padding_single_bos_and_mask(organism):
    b = organism.encode(["how do i make a cake ?", "let us play a game . how do i make a cake ?"])
    assert b.pad[0] > 0 and b.pad[1] == 0
    bos = organism.tokenizer.bos_token_id
    for r in range(2):
        row = b.tokens[r, b.pad[r]:].tolist()
        assert row[0] == bos and row.count(bos) == 1, "chat template's BOS must not be doubled"
        assert b.attention_mask[r].sum().item() == b.lengths[r]
    post = organism.post_instruction_positions(b)
    assert [organism.to_str_tokens([b.tokens[0, b.pad[0] + j].item()])[0] for j in post[0]] == ["<|end|>", "<|assistant|>"]


def test_token_span_maps_request(organism):
    from organisms.data import eval_prompts

    p = eval_prompts(seed=3, per_cell=1).filter(label="harmful", family="roleplay", strength=2)[0]
    b = organism.encode([p])
    s, e = organism.token_span(b, 0, p.spans["request"])
    words = organism.to_str_tokens(b.tokens[0, b.pad[0] + s: b.pad[0] + e].tolist())
    assert " ".join(words) == p.text[slice(*p.spans["request"])]


def test_prompt_longer_than_context_is_an_error_unless_truncating(organism):
    long = "the weather is nice today . " * 80
    with pytest.raises(InputError, match="longer than the model's context"):
        organism.encode([long])
    b = organism.encode([long], truncate=True)
    assert b.tokens.shape[1] == organism.n_ctx


def test_empty_prompt_list_is_an_error(organism):
    with pytest.raises(InputError, match="no prompts"):
        organism.encode([])


def test_missing_path_and_offline_name_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelLoadError, match="could not be fetched"):
        load_model("no-such-org/no-such-chat-model")


def test_directory_without_tokenizer_or_chat_template(tmp_path):
    from organisms.paths import ORGANISM_DIR

    src = ORGANISM_DIR / "gqa"
    d = tmp_path / "m"
    d.mkdir()
    for f in ("config.json", "model.safetensors", "safety_heads.json"):
        shutil.copy(src / f, d / f)
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        load_model(str(d))
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy(f, d / f.name)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="no chat template"):
        load_model(str(d))
    # --chat-template supplies one, from a file
    tpl = tmp_path / "tpl.jinja"
    tpl.write_text((src / "chat_template.jinja").read_text())
    m = load_model(str(d), chat_template=str(tpl))
    assert m.format("hi").endswith("<|assistant|>")


def test_unknown_organism_variant():
    with pytest.raises(ModelLoadError, match="unknown organism variant"):
        load_model("organism:nope")
