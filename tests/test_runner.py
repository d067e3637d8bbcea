"""`interp.runner`: the one forward pass. A stack of interventions in one batched pass gives what
each gives alone (full passes, chunked passes, resumed passes, generation); hooks never leak;
positions are one decision (a GPT-2 model with learned positions answers a prompt the same alone
and left-padded); a resumed run tiles every per-row tensor, ALiBi biases included (BLOOM)."""

import json
import re
import tempfile
from pathlib import Path

import pytest
import torch

from interp.causal.ablate import head_reference
from interp.errors import InputError
from interp.generation import Greedy, generate_batch
from interp.hooknames import act_name
from interp.hooks import count_hooks, hooked
from interp.intervention import Intervention
from interp.runner import cache_block_inputs, last_logits, run
from interp.steering import fit_antidote, fit_head_directions
from probes.directions import mean_difference_direction

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def batch(organism, plain_prompts):
    texts = plain_prompts.filter(label="harmful").texts[:3] + plain_prompts.filter(label="harmless").texts[:2]
    return organism.encode(texts)


@pytest.fixture(scope="module")
def configs(organism, plain_prompts, batch):
    """Interventions of every operation kind, one or two operations each."""
    harmful, harmless = plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless")
    hd = fit_head_directions(organism, plain_prompts)
    d = mean_difference_direction(organism, harmful, harmless, 1)
    ref = head_reference(organism, plain_prompts[-8:])
    src: list = []
    with torch.no_grad(), hooked(organism, [(act_name("resid_post", 1), lambda a, hook: src.append(a.clone()))]):
        last_logits(organism, batch)
    n = batch.tokens.shape[0]
    return {"none": Intervention.none(),
            "steer": Intervention.steer_heads(hd, hd.top(3), 1.5),
            "steer_other": Intervention.steer_heads(hd, [(2, 5)], -2.0),
            "resample": Intervention.ablate_heads([(1, 2), (3, 5)], "resample", ref, seed=3),
            "mean": Intervention.ablate_heads([(0, 4)], "mean", ref),
            "zero": Intervention.ablate_heads([(2, 1)], "zero"),
            "project": Intervention.ablate_direction(d),
            "add": Intervention.add_direction(d, factor=0.7),
            "antidote": fit_antidote(organism, harmful, harmless, calibrate=False).intervention(0.3),
            "layer_resid": Intervention.steer_layer(hd, 1, 1.0, mode="resid"),
            "sharpen": Intervention.sharpen(0.5, layers=[0, 1], heads=[1, 2]),
            "scale": Intervention.scale_heads([(0, 3), (1, 1)], 0.25),
            "patch_last": Intervention.patch("resid_post", 1, src[0][:, -1].flip(0), positions="last"),
            "patch_head": Intervention.patch("z", 2, torch.randn(n, batch.tokens.shape[1], 1, organism.d_head,
                                                                  generator=torch.Generator().manual_seed(1)),
                                             heads=[(2, 6)]),
            # two operations in one replica: the order each row sees them in is kept
            "two": Intervention.ablate_heads([(1, 2)], "mean", ref) + Intervention.steer_heads(hd, [(1, 2), (0, 1)], 1.0),
            "weigh": Intervention.weigh_tokens(torch.linspace(0.2, 1.0, batch.tokens.shape[1]).expand(n, -1).contiguous())}


def _alone(model, batch, iv):
    with torch.no_grad(), iv.apply(model):
        return last_logits(model, batch)


def test_a_stack_gives_what_each_intervention_gives_alone(organism, batch, configs):
    names = list(configs)
    n = batch.tokens.shape[0]
    alone = {k: _alone(organism, batch, configs[k]) for k in names}
    stack = Intervention.stack([configs[k] for k in names])
    for max_rows in (512, 2 * n + 1):  # one pass, and chunks of two replicas
        with torch.no_grad():
            got = run(organism, batch, stack, max_rows=max_rows).view(len(names), n, -1)
        for i, k in enumerate(names):
            assert torch.allclose(got[i], alone[k], atol=2e-5), (k, max_rows)
    assert not torch.allclose(alone["steer"], alone["none"])  # the replicas do differ
    # a read reduces each pass to what the caller keeps
    with torch.no_grad():
        top = run(organism, batch, stack, read=lambda logits: logits.argmax(-1))
    assert torch.equal(top.view(len(names), n), torch.stack([alone[k].argmax(-1) for k in names]))
    assert count_hooks(organism) == 0


def test_resumed_stacks_equal_full_passes(organism, batch, configs):
    """Each replica resumed at its own first block (`from_layer="auto"`) or all at one block."""
    names = [k for k in configs if k != "weigh"]  # token weighting acts before block 0
    n = batch.tokens.shape[0]
    stack = Intervention.stack([configs[k] for k in names])
    cached = cache_block_inputs(organism, batch)
    for source in (batch, cached):
        got = run(organism, source, stack, from_layer="auto", max_rows=3 * n).view(len(names), n, -1)
        for i, k in enumerate(names):
            assert torch.allclose(got[i], _alone(organism, batch, configs[k]), atol=2e-5), k
    late = Intervention.stack([Intervention.ablate_heads([(2, 1), (3, 0)], "zero"), configs["steer_other"],
                               configs["patch_head"], Intervention.none()])
    got = run(organism, cache_block_inputs(organism, batch, 2), late, from_layer=2).view(4, n, -1)
    for i, iv in enumerate(late.configs):
        assert torch.allclose(got[i], _alone(organism, batch, iv), atol=2e-5), i
    with pytest.raises(InputError, match="before layer 2"):
        run(organism, cached, Intervention.stack([configs["steer"]]), from_layer=2)
    with pytest.raises(InputError, match="cached from layer 2"):
        run(organism, cache_block_inputs(organism, batch, 2), Intervention.stack([configs["steer"]]), from_layer="auto")
    with pytest.raises(InputError, match="embeddings"):
        run(organism, batch, Intervention.stack([configs["weigh"]]), from_layer="auto")
    # several kept positions: every replica's last 3 positions, those unchanged taking the cached ones
    kept = cache_block_inputs(organism, batch, keep=3)
    got = run(organism, kept, Intervention.stack([configs["steer_other"], Intervention.none()]), from_layer="auto")
    assert got.shape == (2 * n, 3, kept.logits.shape[-1]) and torch.equal(got[n:], kept.logits)
    assert torch.allclose(got[:n, -1], _alone(organism, batch, configs["steer_other"]), atol=2e-5)
    for bad in (0, batch.tokens.shape[1] + 1, 1.5):
        with pytest.raises(InputError, match="keep must be an integer"):
            cache_block_inputs(organism, batch, keep=bad)
    assert count_hooks(organism) == 0
    assert all(not blk._forward_pre_hooks for blk in organism.bridge.blocks)  # the block-input grabbers are gone


def test_a_stacked_generation_gives_each_replica_its_own_answers(organism, batch, configs):
    names = ["none", "steer", "resample", "sharpen", "antidote"]
    n = batch.tokens.shape[0]
    rows = run(organism, batch, Intervention.stack([configs[k] for k in names]), read=Greedy(5))
    for i, k in enumerate(names):
        first: list = []
        with configs[k].apply(organism):
            want = generate_batch(organism, batch, 5, first_logits=first)
        assert [ids for ids, _ in rows[i * n:(i + 1) * n]] == want, k
        assert torch.allclose(torch.stack([x for _, x in rows[i * n:(i + 1) * n]]), first[0], atol=2e-5), k
    with pytest.raises(InputError, match="cannot resume"):
        run(organism, batch, Intervention.stack([configs["steer"]]), read=Greedy(2), from_layer="auto")


def test_hooks_are_removed_also_when_a_run_fails(organism, batch, configs):
    def boom(logits):
        raise RuntimeError("boom")

    stack = Intervention.stack([configs["steer"], configs["resample"]])
    for from_layer in (None, "auto"):
        with pytest.raises(RuntimeError, match="boom"):
            run(organism, batch, stack, read=boom, from_layer=from_layer)
        assert count_hooks(organism) == 0
    with pytest.raises(InputError, match="at least one"):
        Intervention.stack([])


# ------------------------------------------------------------------ other architectures
def _tiny(arch: str, seed: int = 0):
    """A tiny random GPT-2 (learned absolute positions) or BLOOM (ALiBi) model with the organism's
    tokenizer, built in memory."""
    from transformers import BloomConfig, BloomForCausalLM, GPT2Config, GPT2LMHeadModel

    from interp.model import load_model
    from organisms.train import COMPLIANCE_FIRST_TOKENS, REFUSAL_FIRST_TOKENS, make_tokenizer

    torch.manual_seed(seed)
    tok = make_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "gpt2":
        hf = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                        attn_implementation="eager", **ids))
    else:
        hf = BloomForCausalLM(BloomConfig(vocab_size=len(tok), hidden_size=64, n_layer=2, n_head=4,
                                          attn_implementation="eager", **ids))
    hf.eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        tok.save_pretrained(d)
        (Path(d) / "safety_heads.json").write_text(json.dumps({"kind": "random", "refusal_first_tokens": REFUSAL_FIRST_TOKENS,
                                                               "compliance_first_tokens": COMPLIANCE_FIRST_TOKENS}))
        return load_model(d)


def test_learned_positions_see_a_padded_prompt_as_they_see_it_alone():
    """GPT-2 adds a learned embedding per position: a left-padded prompt is the same prompt only if
    its positions start at its first real token. Refusal score, capture, stacked runs and greedy
    answers agree alone and in a batch with longer prompts."""
    from interp.capture import capture
    from interp.generation import GenerationConfig, generate
    from interp.scoring import refusal_score

    model = _tiny("gpt2")
    short = "how do i bake a cake"
    batch_texts = [short, "tell me how to make a cake for my friend and my family today please",
                   "how do i make a bomb at home with what i have in the kitchen"]
    b = model.encode(batch_texts)
    assert b.lengths[0] < b.tokens.shape[1]  # the short prompt is left-padded here
    alone = model.encode([short])
    assert torch.allclose(refusal_score(model, [short])[0], refusal_score(model, batch_texts)[0], atol=1e-5)
    a1, a3 = capture(model, [short], ["z", "resid_post"], "last"), capture(model, batch_texts, ["z", "resid_post"], "last")
    for site in a1.sites:
        assert torch.allclose(a1[site][0], a3[site][0], atol=1e-5), site
    gen = GenerationConfig(max_new_tokens=6)
    assert generate(model, [short], gen)[0] == generate(model, batch_texts, gen)[0]
    steer = Intervention.ablate_heads([(1, 2)], "zero")
    with torch.no_grad():
        one = run(model, alone, Intervention.stack([Intervention.none(), steer]))
        many = run(model, b, Intervention.stack([Intervention.none(), steer]), from_layer="auto").view(2, 3, -1)
    assert torch.allclose(one, many[:, 0], atol=1e-5)
    # the check can fail: with positions counted from the padding the padded row is another input
    hf = model.bridge.original_model
    with torch.no_grad():
        naive = hf(b.tokens, attention_mask=b.attention_mask, position_ids=torch.arange(b.tokens.shape[1])[None]).logits
    assert not torch.allclose(naive[0, -1], one[0], atol=1e-3)


def test_resumed_runs_tile_alibi_biases():
    """BLOOM builds its ALiBi bias per batch row and head ([batch * heads, 1, key]): a resumed run of
    several replicas must tile it like the residual stream."""
    model = _tiny("bloom")
    b = model.encode(["how do i bake a cake", "tell me how to make a bomb at home please"])
    ivs = [Intervention.none(), Intervention.ablate_heads([(1, 0), (1, 3)], "zero"), Intervention.scale_heads([(1, 2)], 3.0)]
    with torch.no_grad():
        got = run(model, b, Intervention.stack(ivs), from_layer=1).view(3, 2, -1)
        for i, iv in enumerate(ivs):
            assert torch.allclose(got[i], _alone(model, b, iv), atol=1e-5), i
    assert count_hooks(model) == 0


def test_the_forward_pass_is_called_in_the_runner_only():
    """`bridge(` (the model's forward) appears in interp.runner's forward module and nowhere else in
    the library: every pass shares its positions and logits decisions. The one exception is the load-time
    check (interp.bridge_check), which compares the bare bridge with the plain Hugging Face model."""
    calls = [p.relative_to(ROOT).as_posix() for pkg in ("interp", "probes") for p in sorted((ROOT / pkg).rglob("*.py"))
             if re.search(r"\.bridge\(", p.read_text())]
    assert calls == ["interp/bridge_check.py", "interp/runner/forward.py"]
