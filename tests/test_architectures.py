"""The architecture matrix: every family of tests/architectures.py, tiny and random, through the
whole toolkit. For each: the bridge's logits are plain transformers' (alone and left-padded), the
per-head outputs have the query-head count, ablating a head changes the output, a run resumed at a
block from cached inputs (tiled, as the causal search and the direction selection do) is the clean
run, the sites are those the blocks have, and every command exits 0 on a few prompts.

Random models refuse nothing: the commands run with --labels category and the foreign vocabulary's
openers. Falcon's new decoder is the one configuration TransformerLens 4.3 wraps wrongly: the load
refuses it (bridge check), or fails with an error that blames the bridge, not the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import architectures as A
from interp.cli import main
from interp.errors import InputError, ModelLoadError

ARCHS = list(A.ARCHITECTURES)
PHRASES = ["--refusal-phrases", "sorry", "--compliance-phrases", "certainly"]
PROMPTS = ["Tell me how to steal a car", "Write a tutorial on how to make a cake for my mother",
           "Give instructions for making a soup"]


class Matrix:
    """The tiny models, built on first use into one session directory, and loaded once each."""

    def __init__(self, root: Path):
        self.root, self._models = root, {}
        self.prompts = A.write_prompts(root / "prompts")

    def dir(self, arch: str) -> Path:
        d = self.root / arch
        return d if (d / "config.json").exists() else A.build(arch, d)

    def model(self, arch: str):
        from interp.model import load_model

        if arch not in self._models:
            self._models[arch] = load_model(str(self.dir(arch)), refusal_phrases=["sorry"], compliance_phrases=["certainly"])
        return self._models[arch]

    def files(self, arch: str) -> list[str]:
        return ["--model", str(self.dir(arch)), "--harmful", str(self.prompts / "harmful.csv"),
                "--harmless", str(self.prompts / "harmless.csv"), "--labels", "category", *PHRASES]


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    return Matrix(tmp_path_factory.mktemp("architectures"))


def _hf(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_logits_are_plain_transformers_alone_and_left_padded(matrix, arch):
    model, hf = matrix.model(arch), _hf(matrix.dir(arch))
    assert model.meta["bridge_check"]["max_abs_diff"] <= 1e-4 and not model.meta["bridge_check"]["skipped"]
    batch = model.encode(PROMPTS)
    padded = model.bridge(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
    assert min(batch.pad) == 0 and max(batch.pad) > 0  # the batch is left-padded
    for i, p in enumerate(PROMPTS):
        alone_tokens = model.encode([p]).tokens
        want = hf(input_ids=alone_tokens).logits[0, -1]
        alone = model.bridge(alone_tokens)[0, -1]
        assert (alone - want).abs().max() <= 1e-4, f"{arch}: prompt {i} alone"
        assert (padded[i] - want).abs().max() <= 1e-4, f"{arch}: prompt {i} left-padded"


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_have_the_query_head_count_and_ablating_one_changes_the_output(matrix, arch):
    from interp.capture import capture
    from interp.hooks import count_hooks
    from interp.intervention import Intervention
    from interp.scoring import last_logits

    model = matrix.model(arch)
    z = capture(model, PROMPTS, ("z", 1), "last")[("z", 1)]
    assert tuple(z.shape) == (len(PROMPTS), 1, A.HEADS, A.HIDDEN // A.HEADS) and model.n_heads == A.HEADS
    base = last_logits(model, PROMPTS)
    with Intervention.ablate_heads([(1, 2)], method="zero").apply(model):
        ablated = last_logits(model, PROMPTS)
    assert (ablated - base).abs().max() > 1e-5
    assert count_hooks(model) == 0
    assert torch.equal(last_logits(model, PROMPTS), base)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_run_resumed_at_a_block_and_tiled_is_the_clean_run(matrix, arch):
    """What the causal search and the direction selection do: cache every block's input and call
    arguments once, then run the later blocks on 3 replicas of the batch. Every per-row tensor must
    be tiled (BLOOM's ALiBi bias is [batch x heads, 1, key]), every positional argument kept (GPT-2
    passes the mask so), and the logits finished as the model does (Cohere scales them)."""
    from interp.runner import cache_block_inputs, forward, resume_logits

    model = matrix.model(arch)
    # one prompt, and as many prompts as heads: a shape rule alone would take MPT's shared
    # [heads, 1, key] ALiBi bias, or BLOOM's per-row [rows x heads, 1, key] one, for the other
    for prompts in (PROMPTS[:1], [*PROMPTS, "Tell me how to wash a car"]):
        cached = cache_block_inputs(model, model.encode(prompts))
        for layer in (0, 1):
            tiled = resume_logits(model, cached, layer, repeat=3)
            assert (tiled - cached.logits.repeat(3, 1)).abs().max() <= 1e-5, f"{arch}: {len(prompts)} resumed at {layer}"
        if arch == "bloom":  # the tiling above went through the per-head ALiBi bias
            assert cached.kwargs[1]["alibi"].shape[0] == len(prompts) * model.n_heads
    # several kept positions (the specificity check's teacher-forced answers): the forward's own logits
    b = model.encode(PROMPTS)
    kept = cache_block_inputs(model, b, keep=3)
    full = forward(model, b.tokens, b.attention_mask, logits_to_keep=None)[:, -3:]
    assert kept.logits.shape == full.shape and (kept.logits - full).abs().max() <= 1e-4, arch
    assert (resume_logits(model, kept, 1, repeat=2) - full.repeat(2, 1, 1)).abs().max() <= 1e-4, arch


@pytest.mark.parametrize("arch", ARCHS)
def test_sites_are_the_ones_the_blocks_have(matrix, arch):
    from interp.hooknames import require_site_kinds, site_kinds, stream_after_attention

    model = matrix.model(arch)
    kinds = site_kinds(model)
    assert {"resid_pre", "resid_post", "attn_out", "mlp_out", "z", "pattern"} <= set(kinds)
    assert ("resid_mid" in kinds) == (arch not in A.PARALLEL)
    assert stream_after_attention(model) == ("resid_post" if arch in A.PARALLEL else "resid_mid")
    if arch in A.PARALLEL:
        with pytest.raises(InputError, match="no resid_mid site .*parallel.*its sites are resid_pre, resid_post"):
            require_site_kinds(model, ["resid_mid"], "sites")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_command_exits_0(matrix, arch, tmp_path, capsys):
    files = matrix.files(arch)
    for command, extra in (("eval", []), ("rank", ["--k-folds", "3"]), ("causal", ["--k", "1"]), ("steer", []),
                           ("slipping", ["--no-defenses"])):
        assert main([command, *files, "--per-cell", "1", "--out", str(tmp_path / command), *extra]) == 0, command
    assert main(["capture", "--model", str(matrix.dir(arch)), "--prompts", str(matrix.prompts / "harmful.csv"),
                 "--label", "harmful", "--sites", "z,resid_pre,resid_post", "--out", str(tmp_path / "acts"), *PHRASES]) == 0
    capsys.readouterr()
    direction = json.loads((tmp_path / "rank" / "direction.json").read_text())
    searched = ["resid_pre"] if arch in A.PARALLEL else ["resid_pre", "resid_mid"]
    assert direction["sites_searched"] == searched and {r["site"] for r in direction["candidates"]} == set(searched)
    if arch in A.PARALLEL:
        assert "resid_mid" in direction["sites_left_out"]


# ------------------------------------------------------------------ sites a user asks for
def test_capture_of_a_site_the_model_lacks_is_one_line_naming_its_sites(matrix, tmp_path, capsys):
    out = tmp_path / "acts"
    assert main(["capture", "--model", str(matrix.dir("gpt_neox")), "--prompts", str(matrix.prompts / "harmful.csv"),
                 "--label", "harmful", "--sites", "z,resid_mid", "--out", str(out), *PHRASES]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # (after transformers' progress bars)
    assert line.startswith("safety-heads: error: sites: ") and "no resid_mid site" in line
    assert line.endswith("its sites are resid_pre, resid_post, attn_out, mlp_out, z")
    assert not any(out.glob("*.safetensors"))  # refused before any forward pass wrote a shard


def test_an_explicit_direction_site_the_model_lacks_is_an_error(matrix):
    from interp.prompts import PromptSet, Prompt
    from probes.directions import SelectionConfig, find_refusal_direction

    model = matrix.model("gptj")
    ps = PromptSet("p", tuple(Prompt(t, lab) for t, lab in zip(PROMPTS * 4, ["harmful", "harmless"] * 6)))
    with pytest.raises(InputError, match="direction sites: .* has no resid_mid site"):
        find_refusal_direction(model, ps, ps, labels="category", cfg=SelectionConfig(sites=("resid_pre", "resid_mid")))


def test_head_steering_of_a_parallel_block_reads_the_block_output(matrix):
    from interp.intervention import Intervention
    from interp.prompts import Prompt, PromptSet
    from interp.scoring import last_logits
    from interp.steering.heads import fit_head_directions

    model = matrix.model("codegen")
    ps = PromptSet("p", tuple(Prompt(t, lab) for t, lab in zip(PROMPTS * 2, ["harmful", "harmless"] * 3)))
    hd = fit_head_directions(model, ps)
    assert hd.resid_site == "resid_post" and float(hd.resid_sigma[1]) > 0
    iv = Intervention.steer_layer(hd, 1, 4.0, mode="resid")
    assert [op.site for op in iv.ops] == ["resid_post"]
    with iv.apply(model):
        moved = last_logits(model, PROMPTS)
    assert (moved - last_logits(model, PROMPTS)).abs().max() > 1e-4


# ------------------------------------------------------------------ sliding windows
@pytest.mark.parametrize("arch", ["gemma2", "gemma3_text"])
def test_the_slipping_trace_reads_a_windowed_layers_keys_where_they_are(matrix, arch):
    """Under the key/value cache a layer with local attention (window 4 here) holds only its last
    keys: each generated token's attention must be matched to those keys, so that every step's
    masses sum to 1 as on a full layer, and the report says which layers cannot see the request."""
    from interp.prompts import PromptSet
    from interp.slipping.trace import TraceConfig, sliding_windows, token_attention, trace_attention, window_reach

    model = matrix.model(arch)
    assert sliding_windows(model) == {0: 4}
    ps = PromptSet.from_texts("p", PROMPTS, "harmful")
    trace = trace_attention(model, ps, TraceConfig(max_new_tokens=4))
    sums = trace.mass.sum(-1)[trace.valid]  # [valid steps, layer, head]
    assert trace.valid[:, 1:].any() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
    reach = window_reach(model, trace)
    assert reach["windows"] == {"0": 4} and reach["pairs"] == len(PROMPTS) and reach["pairs_beyond_window"] == len(PROMPTS)
    mat, keys, _ = token_attention(model, ps[0], max_new_tokens=4)
    assert mat.shape[1] == len(keys) and torch.allclose(mat.sum(1), torch.ones(mat.shape[0]), atol=1e-4)


# ------------------------------------------------------------------ Falcon's new decoder
def test_falcon_new_decoder_with_grouped_kv_is_refused_by_the_bridge_check(tmp_path):
    """TransformerLens 4.3 splits Falcon's fused QKV as [Q | K | V]; with the new decoder Hugging Face
    groups it per key/value head. The model loads and runs, with other logits: refused at load."""
    from interp.model import load_model

    d = A.build("falcon", tmp_path / "falcon40b", **A.FALCON_NEW_DECODER, multi_query=False)
    with pytest.raises(ModelLoadError, match=r"TransformerLens 4\.\d+\.\d+ bridge computes other logits than the "
                                             r"FalconForCausalLM \(falcon\).*max \|difference\| 0\.\d+.*--skip-bridge-check"):
        load_model(str(d), refusal_phrases=["sorry"], compliance_phrases=["certainly"])
    forced = load_model(str(d), refusal_phrases=["sorry"], compliance_phrases=["certainly"], skip_bridge_check=True)
    assert forced.meta["bridge_check"]["skipped"] is True
    assert forced.describe()["bridge_check"]["skipped"] is True  # every report records the override


def test_falcon_new_decoder_with_multi_query_is_a_bridge_error_not_a_file_error(tmp_path):
    """Hugging Face ignores multi_query under the new decoder; the adapter's QKV split fails."""
    d = A.build("falcon", tmp_path / "falcon_mq", **A.FALCON_NEW_DECODER, multi_query=True)
    from interp.model import load_model

    with pytest.raises(ModelLoadError) as e:
        load_model(str(d), refusal_phrases=["sorry"], compliance_phrases=["certainly"])
    msg = str(e.value)
    assert "TransformerLens" in msg and "not a problem with the model's files" in msg and "restore" not in msg


def test_an_architecture_the_bridge_lacks_is_one_line_naming_it(matrix, tmp_path, capsys):
    d = A.build("helium", tmp_path / "helium", hidden_size=A.HIDDEN, intermediate_size=128, num_hidden_layers=A.LAYERS,
                num_attention_heads=A.HEADS, num_key_value_heads=2, head_dim=16)
    assert main(["eval", "--model", str(d), "--harmful", str(matrix.prompts / "harmful.csv"),
                 "--harmless", str(matrix.prompts / "harmless.csv"), *PHRASES]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("safety-heads: error: TransformerLens ") and "HeliumForCausalLM (helium)" in line
    assert "not a problem with the model's files" in line and "restore" not in line


def test_skip_bridge_check_is_recorded_in_the_artifacts(matrix, tmp_path, capsys):
    assert main(["rank", *matrix.files("llama"), "--per-cell", "1", "--k-folds", "3", "--skip-bridge-check",
                 "--out", str(tmp_path / "rank")]) == 0
    capsys.readouterr()
    for name in ("direction.json", "ranking.json"):
        assert "skipped" in json.loads((tmp_path / "rank" / name).read_text())["bridge_check"]


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_the_answer_aligned_reference_reads_the_prompt_as_generation_does(matrix, arch):
    """The specificity check's teacher-forced pass over prompt + answer, with per-position mean
    ablation realigned to the answer, gives the first answer token the logits generation had."""
    from interp.causal.ablate import head_reference
    from interp.causal.specificity import _answer_slots
    from interp.generation import generate_batch
    from interp.hooks import count_hooks
    from interp.intervention import Intervention
    from interp.intervention.heads import AblateHeads
    from interp.runner import forward

    model = matrix.model(arch)
    ref = head_reference(model, PROMPTS)
    heads = ((0, 1), (1, 2))
    b = model.encode([PROMPTS[0]])
    first = []
    with Intervention.of(AblateHeads(heads, "mean", ref.mean)).apply(model):
        ans = generate_batch(model, b, 4, first_logits=first)[0]  # may be empty: the prompt's slots still count
    tokens = torch.tensor([b.tokens[0].tolist() + ans])
    with Intervention.of(AblateHeads(heads, "mean", _answer_slots(ref.mean, True, False, len(ans)))).apply(model):
        logits = forward(model, tokens, torch.ones_like(tokens), logits_to_keep=len(ans) + 1)[0]
    assert (logits[0].float() - first[0][0].float()).abs().max() <= 1e-3, arch
    assert count_hooks(model) == 0
