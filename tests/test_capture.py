"""Activation capture: positions, batch invariance, memory discipline, shards and resume."""

import pytest
import torch

from interp.capture import Activations, capture, capture_to_disk
from interp.errors import InputError
from interp.hooks import count_hooks


def test_capture_matches_full_cache_at_last_position(tiny, plain_prompts):
    ps = plain_prompts[:3]
    acts = capture(tiny, ps, ["z", "resid_post"], "last", batch_size=3)
    for i, p in enumerate(ps):
        b = tiny.encode([p])
        _, cache = tiny.bridge.run_with_cache(b.tokens, attention_mask=b.attention_mask)
        torch.testing.assert_close(acts[("z", 1)][i, 0], cache["blocks.1.attn.hook_z"][0, -1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(acts[("resid_post", 0)][i, 0], cache["blocks.0.hook_resid_post"][0, -1], atol=1e-5, rtol=1e-4)
    assert count_hooks(tiny) == 0


@pytest.mark.parametrize("positions", ["last", "post_instruction", [0, -1]])
def test_result_does_not_change_when_batched_with_longer_prompts(organism, eval_prompts, positions):
    short = eval_prompts.filter(label="harmful", family=None)[:2]
    longer = eval_prompts.filter(label="harmful", family="distractor", strength=8)[:6]
    mixed = short.concat(longer)
    alone = capture(organism, short, ["z", "resid_pre", "resid_post"], positions, batch_size=1)
    batched = capture(organism, mixed, ["z", "resid_pre", "resid_post"], positions, batch_size=8)
    for s in alone.sites:
        diff = (alone[s] - batched[s][:2]).abs().max().item()
        assert diff < 1e-4, f"{s} changed by {diff} when batched with longer prompts"


def test_post_instruction_positions_shape_and_metadata(organism, plain_prompts):
    acts = capture(organism, plain_prompts[:4], "resid_pre", "post_instruction")
    assert acts[("resid_pre", 0)].shape == (4, 2, organism.d_model)
    assert acts.meta["positions"] == "post_instruction[2]"
    assert acts.meta["model"] == organism.name and acts.meta["prompt_ids"] == plain_prompts[:4].ids
    assert "blocks.0.hook_resid_pre" in acts.meta["hooks"]


def test_single_head_site_and_stack(organism, plain_prompts):
    acts = capture(organism, plain_prompts[:3], [("z", 2, 5), "z"], "last")
    torch.testing.assert_close(acts[("z", 2, 5)], acts[("z", 2)][:, :, 5])
    assert acts.stack_heads().shape == (3, organism.n_layers, organism.n_heads, organism.d_head)


def test_hook_keeps_only_requested_positions(organism, plain_prompts):
    """What survives the hook is batch x kept positions, independent of sequence length."""
    long = "the weather is nice today . " * 20 + "how do i make a cake ?"
    a = capture(organism, [long, "how do i make a cake ?"], "resid_post", "last")
    assert a[("resid_post", 3)].shape == (2, 1, organism.d_model)


def test_shards_stream_and_resume(tmp_path, organism, plain_prompts):
    ps = plain_prompts[:10]
    out = capture_to_disk(organism, ps, tmp_path / "cap", sites=["z"], shard_size=4, progress=False)
    shards = sorted(out.glob("shard_*.safetensors"))
    assert len(shards) == 3
    whole = Activations.load(out)
    direct = capture(organism, ps, ["z"], "last")
    torch.testing.assert_close(whole[("z", 0)], direct[("z", 0)], atol=1e-5, rtol=1e-4)
    # resume: delete one shard, rerun, only it is recomputed
    shards[1].unlink()
    mtime0 = shards[0].stat().st_mtime_ns
    capture_to_disk(organism, ps, out, sites=["z"], shard_size=4, progress=False)
    assert shards[0].stat().st_mtime_ns == mtime0 and shards[1].exists()
    with pytest.raises(InputError, match="other inputs"):
        capture_to_disk(organism, plain_prompts[10:14], out, sites=["z"], shard_size=4, progress=False)


def test_save_load_roundtrip(tmp_path, tiny, plain_prompts):
    a = capture(tiny, plain_prompts[:3], ["z", ("resid_pre", 1)], "last")
    a.save(tmp_path / "acts")
    b = Activations.load(tmp_path / "acts")
    assert set(map(str, a.sites)) == set(map(str, b.sites))
    torch.testing.assert_close(a[("z", 0)], b[("z", 0)])
    assert b.meta["prompt_ids"] == plain_prompts[:3].ids


@pytest.mark.parametrize("sites,match", [
    ("attn_weights", "unknown site kind"),
    (("z", 99), "layer 99 out of range"),
    (("z", 0, 8), "head 8 out of range"),
    (("resid_post", 0, 1), "has no heads"),
])
def test_bad_sites(organism, sites, match):
    with pytest.raises(InputError, match=match):
        capture(organism, ["how do i make a cake ?"], sites)


def test_bad_positions_and_empty(organism):
    with pytest.raises(InputError, match="outside prompt"):
        capture(organism, ["how do i make a cake ?"], "z", [500])
    with pytest.raises(InputError, match="unknown positions"):
        capture(organism, ["how do i make a cake ?"], "z", "first")
    with pytest.raises(InputError, match="empty"):
        capture(organism, [], "z")
    with pytest.raises(InputError, match="not captured"):
        capture(organism, ["how do i make a cake ?"], ("z", 0))[("z", 1)]


# ------------------------------------------------------------------ reducers: the one read path
def test_reducers_match_the_full_cache(tiny, plain_prompts):
    from interp.capture import AllPositions, AttentionMass, LastPosition, SpanMean, SpanSum, capture_hooks
    from interp.hooknames import LOGITS, act_name

    ps = plain_prompts[:5]
    spans = [(1, 3)] * len(ps)  # tokens 1 and 2 of each unpadded prompt
    reads = {"last": (act_name("z", 1), LastPosition()), "mean": (act_name("resid_post", 0), SpanMean()),
             "sum": (act_name("resid_post", 0), SpanSum(spans)), "mass": (act_name("pattern", 1), AttentionMass(spans)),
             "all_mass": (act_name("pattern", 1), AttentionMass([(0, 10**6)] * len(ps))), "logits": (LOGITS, LastPosition())}
    got = capture_hooks(tiny, ps, reads, batch_size=2)  # batched by length, rows back in the caller's order
    for i, p in enumerate(ps):
        b = tiny.encode([p])
        logits, cache = tiny.bridge.run_with_cache(b.tokens, attention_mask=b.attention_mask)
        tol = dict(atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got["last"][i], cache["blocks.1.attn.hook_z"][0, -1], **tol)
        torch.testing.assert_close(got["mean"][i], cache["blocks.0.hook_resid_post"][0].mean(0), **tol)
        torch.testing.assert_close(got["sum"][i], cache["blocks.0.hook_resid_post"][0, 1:3].sum(0), **tol)
        torch.testing.assert_close(got["mass"][i], cache["blocks.1.attn.hook_pattern"][0, :, -1, 1:3].sum(-1), **tol)
        torch.testing.assert_close(got["logits"][i], logits[0, -1], **tol)
    # from the last query, the whole prompt holds all the attention (padding none)
    torch.testing.assert_close(got["all_mass"], torch.ones_like(got["all_mass"]))
    # one batch as encoded, and token sequences, read the same
    b = tiny.encode(ps)
    whole = capture_hooks(tiny, b, {"z": (act_name("z", 1), AllPositions())})["z"]
    assert whole.shape == (len(ps), b.tokens.shape[1], tiny.n_heads, tiny.d_head)
    torch.testing.assert_close(whole[:, -1], got["last"], atol=1e-5, rtol=1e-4)
    seqs = [b.tokens[r, b.pad[r]:].tolist() for r in range(len(ps))]
    by_ids = capture_hooks(tiny, seqs, {"z": (act_name("z", 1), LastPosition())}, batch_size=3)["z"]
    torch.testing.assert_close(by_ids, got["last"], atol=1e-5, rtol=1e-4)
    assert count_hooks(tiny) == 0


def test_capture_takes_a_reducer_and_keeps_the_callers_order(organism, plain_prompts):
    from interp.capture import LastPosition, SpanMean

    ps = plain_prompts[:6]
    kept = capture(organism, ps, "z", "last", batch_size=4)
    last = capture(organism, ps, "z", batch_size=4, reducer=LastPosition(), sort=False)
    assert last[("z", 1)].shape == (6, organism.n_heads, organism.d_head)
    torch.testing.assert_close(last[("z", 1)], kept[("z", 1)][:, 0], atol=1e-5, rtol=1e-4)
    one = capture(organism, ps, [("z", 2, 3)], reducer=SpanMean())
    every = capture(organism, ps, "z", reducer=SpanMean())
    torch.testing.assert_close(one[("z", 2, 3)], every[("z", 2)][:, 3])
    assert every.meta["positions"] == "mean"


def test_a_reducer_that_fails_leaves_no_hook(organism, plain_prompts):
    from interp.capture import Reducer, capture_hooks
    from interp.hooknames import act_name

    class Boom(Reducer):
        def bind(self, model, batch, rows):
            def fail(act):
                raise RuntimeError("boom")
            return fail, "boom"

    with pytest.raises(RuntimeError, match="boom"):
        capture_hooks(organism, plain_prompts[:2], {"x": (act_name("z", 0), Boom())})
    assert count_hooks(organism) == 0
    with pytest.raises(InputError, match="nothing to capture"):
        capture_hooks(organism, plain_prompts[:2], {})
    with pytest.raises(InputError, match="empty"):
        capture_hooks(organism, [], {"x": (act_name("z", 0), Boom())})


def test_only_capture_runs_the_model_with_a_store_of_hooks():
    """One read path: every activation read goes through interp.capture."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    users = sorted(str(p.relative_to(root)) for d in ("interp", "probes") for p in (root / d).rglob("*.py")
                   if "run_with_hooks" in p.read_text() or "run_with_cache" in p.read_text())
    assert users == ["interp/capture/reads.py"], users


@pytest.mark.parametrize("positions", ["last", "post_instruction"])
def test_capture_with_answers_is_capture_plus_generate_in_one_pass(organism, eval_prompts, positions):
    """The answers are `generate`'s and the activations `capture`'s, from one prompt pass per batch
    (the probes stage labels prompts by behaviour and reads them this way); no hook is left."""
    from interp.capture import capture_with_answers
    from interp.generation import GenerationConfig, generate
    from interp.hooknames import EMBED
    from interp.hooks import hooked

    ps = eval_prompts.filter(label="harmful", family=None)[:3].concat(eval_prompts.filter(family="distractor")[:5])
    gen = GenerationConfig(max_new_tokens=6, batch_size=4)
    passes = []
    count = lambda embed, hook: passes.append(embed.shape[1]) or embed  # noqa: E731
    with hooked(organism, [(EMBED, count)]):
        acts, answers = capture_with_answers(organism, ps, ["z", "resid_pre"], positions, gen)
    prompt_passes = [n for n in passes if n > 1]  # later steps feed one token each
    assert len(prompt_passes) == 2, passes  # 8 prompts in batches of 4: one prompt pass per batch
    assert answers == generate(organism, ps, gen)
    assert any(a for a in answers)
    ref = capture(organism, ps, ["z", "resid_pre"], positions)
    assert acts.sites == ref.sites and acts.meta["positions"] == ref.meta["positions"]
    for s in ref.sites:
        torch.testing.assert_close(acts[s], ref[s], atol=1e-4, rtol=1e-4)
    assert count_hooks(organism) == 0
    with pytest.raises(InputError, match="empty"):
        capture_with_answers(organism, [], "z", "last", gen)
    with pytest.raises(InputError, match="max_new_tokens"):
        capture_with_answers(organism, ps, "z", "last", GenerationConfig(max_new_tokens=0))
