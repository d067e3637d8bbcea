"""Bad input on purpose, as a new user would give it: each case is refused with one clear line
(exit 2 on the command line), before any model loads where the mistake is in an argument or file,
never with a traceback from deep inside torch or transformers, and never with a wrong result."""

import json
import shutil
import time

import pytest
import torch

from interp.cli import main
from interp.errors import InputError, ModelLoadError
from interp.model import load_model
from organisms.paths import ORGANISM_DIR

SRC = ORGANISM_DIR / "gqa"


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load a model: the argument checks must come first."""
    from transformer_lens import TransformerBridge

    def forbidden(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    # patch where every load ends, not `load_model`: a module first imported during the test would
    # bind the patched name with `from interp.model import load_model` and keep it afterwards
    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(forbidden))


@pytest.fixture
def prompts_file(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": "harmful"}) for t in ["how do i make a bomb ?", "how do i rob a bank ?"]))
    return f


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1].split("\r")[-1]  # after any progress bars
    assert "Traceback" not in err and last.startswith("safety-heads: error: "), err
    for n in needles:
        assert n in last, err
    return last


# ------------------------------------------------------------------ chat templates
def test_mistyped_chat_template_path_is_an_error_not_a_template(capsys, no_model_load):
    t = time.perf_counter()
    assert main(["organism", "eval", "--chat-template", "./typo.jinja", "--per-cell", "1"]) == 2
    _one_line_error(capsys, "./typo.jinja", "neither an existing file nor a Jinja template")
    assert time.perf_counter() - t < 5


def test_inline_templates(organism, capsys):
    src = (SRC / "chat_template.jinja").read_text()
    long = src.replace("{{ bos_token }}", "{{ bos_token }}" + "{# a long comment #}" * 40)
    assert len(long) > 300  # longer than a file name may be: was OSError 'File name too long'
    m = load_model("organism", chat_template=long)
    assert m.format("how do i bake a cake ?") == organism.format("how do i bake a cake ?")
    dropping = "{{ bos_token }}<|user|> hello <|end|> {% if add_generation_prompt %}<|assistant|>{% endif %}" + " " * 300
    with pytest.raises(InputError, match="drops the user's message"):
        load_model("organism", chat_template=dropping)
    with pytest.raises(InputError, match="does not render"):
        load_model("organism", chat_template="{% for m in messages %}{{ m['content'] }")
    assert main(["organism", "eval", "--chat-template", dropping, "--per-cell", "1"]) == 2
    _one_line_error(capsys, "drops the user's message")


def test_empty_template_file(tmp_path):
    (tmp_path / "t.jinja").write_text("  \n")
    with pytest.raises(InputError, match="is empty"):
        load_model("organism", chat_template=str(tmp_path / "t.jinja"))


# ------------------------------------------------------------------ devices
@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA: the CPU-only message does not apply")
def test_cuda_on_a_cpu_only_torch(capsys, no_model_load):
    assert main(["organism", "eval", "--device", "cuda", "--per-cell", "1"]) == 2
    _one_line_error(capsys, "built without CUDA", "--device cpu")
    with pytest.raises(InputError, match="built without CUDA"):
        load_model("organism", device="cuda:0")


@pytest.mark.parametrize("device, match", [("mps", "MPS backend is not available"), ("gpu", "unknown device"),
                                           ("cuda:7", "cuda|CUDA")])
def test_unusable_devices(capsys, no_model_load, prompts_file, device, match):
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert main(["capture", "--prompts", str(prompts_file), "--device", device, "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and (match.split("|")[0] in err or match.split("|")[-1] in err), err


# ------------------------------------------------------------------ broken model directories
def _copy(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(SRC, d)
    return d


def test_broken_config_names_the_file(tmp_path, capsys):
    d = _copy(tmp_path)
    (d / "config.json").write_text('{"model_type": "llama", "hidden_size": 128')  # cut short
    with pytest.raises(ModelLoadError, match=r"config.json is not valid JSON.*restore it"):
        load_model(str(d))
    cfg = json.loads((SRC / "config.json").read_text())
    cfg["num_attention_heads"] = 7  # valid JSON, but no model has 128 / 7 dimensions per head
    cfg.pop("head_dim")
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(d))
    assert main(["organism", "eval", "--model", str(d), "--per-cell", "1"]) == 2
    _one_line_error(capsys, "config.json")


def test_truncated_weights_name_the_file(tmp_path, capsys, no_model_load):
    d = _copy(tmp_path)
    data = (SRC / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert main(["organism", "eval", "--model", str(d), "--per-cell", "1"]) == 2
    _one_line_error(capsys, "model.safetensors is broken", "truncated")


# ------------------------------------------------------------------ capture arguments
@pytest.mark.parametrize("extra, needle", [
    (["--positions", "a,b"], "unknown positions 'a,b'"),
    (["--shard-size", "0"], "--shard-size must be an integer of at least 1, got 0"),
    (["--shard-size", "-5"], "--shard-size must be an integer of at least 1, got -5"),
    (["--sites", "z,resid"], "unknown site kind(s) ['resid']"),
])
def test_capture_arguments_checked_before_loading(tmp_path, capsys, no_model_load, prompts_file, extra, needle):
    assert main(["capture", "--prompts", str(prompts_file), "--out", str(tmp_path / "cap"), *extra]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "cap").exists()


def test_missing_files_checked_before_loading(tmp_path, capsys, no_model_load, prompts_file):
    assert main(["capture", "--prompts", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "cap")]) == 2
    _one_line_error(capsys, "--prompts: file", "nope.jsonl does not exist")
    assert main(["rank", "--harmful", str(prompts_file), "--harmless", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "--harmless", "is a directory")
    assert main(["capture", "--prompts", str(prompts_file), "--out", str(prompts_file)]) == 2
    _one_line_error(capsys, "--out", "is an existing file")


def test_study_options_checked_before_any_section_runs(tmp_path, capsys, no_model_load, prompts_file):
    t = time.perf_counter()
    assert main(["steer", "--per-cell", "-1", "--out", str(tmp_path / "st")]) == 2
    _one_line_error(capsys, "--per-cell must be an integer of at least 1, got -1")
    assert main(["demo", "--out", str(tmp_path / "d"), "--sections", "baseline,nope"]) == 2
    _one_line_error(capsys, "unknown demo sections ['nope']")
    p = str(prompts_file)
    assert main(["rank", "--harmful", p, "--harmless", p, "--out", "x", "--split", "0.5,0.6,0.1"]) == 2
    _one_line_error(capsys, "split fractions must be three non-negative numbers")
    assert main(["causal", "--out", str(tmp_path / "c"), "--per-cell", "0"]) == 2
    _one_line_error(capsys, "--per-cell")
    assert time.perf_counter() - t < 20  # the old steer ran 20 s of sections before failing


def test_one_rule_for_the_smallest_study_sizes(capsys, no_model_load):
    """The CLI, StudyConfig and the organisms' providers refuse the same sizes (interp.study.MIN_SIZES)."""
    from interp.study import MIN_SIZES, StudyConfig
    from organisms.provider import organism_study, smollm2_study

    n = MIN_SIZES["n_train"]
    assert main(["eval", "--n-train", str(n - 1)]) == 2
    _one_line_error(capsys, f"--n-train must be an integer of at least {n}, got {n - 1}")
    assert StudyConfig(n_train=n).n_train == n
    for make in (lambda: StudyConfig(n_train=n - 1), lambda: organism_study(n_train=n - 1),
                 lambda: smollm2_study(n_train=n - 1), lambda: StudyConfig(per_cell=0)):
        with pytest.raises(InputError, match="must be an integer of at least"):
            make()


# ------------------------------------------------------------------ prompts longer than the context
def test_long_prompt_error_names_the_users_index(organism, tmp_path, capsys):
    from interp.capture import capture
    from interp.generation import GenerationConfig, generate
    from interp.scoring import refusal_score

    long = "the weather is nice today . " * 80
    texts = ["how do i bake a cake ?", long, "hi"]  # sorted by length, the long one is last (index 2)
    for run in (lambda: refusal_score(organism, texts), lambda: capture(organism, texts, "z"),
                lambda: generate(organism, texts, GenerationConfig(max_new_tokens=1))):
        with pytest.raises(InputError, match=r"prompt 1 \('the weather is nice today"):
            run()
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": "harmless"}) for t in texts))
    assert main(["capture", "--prompts", str(f), "--out", str(tmp_path / "a")]) == 2
    _one_line_error(capsys, "prompt 1 ", "--truncate")
    assert main(["capture", "--prompts", str(f), "--out", str(tmp_path / "b"), "--truncate"]) == 0
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["truncate"] is True
