"""Attention slipping: the request-span trace, series, figures and attention sharpening."""


import pytest
import torch

from interp.errors import InputError
from interp.generation import generate_batch
from interp.hooks import count_hooks, hooked
from interp.prompts import Prompt, PromptSet
from interp.slipping.series import family_series, pearson, series_from_trace
from interp.intervention import Intervention
from interp.slipping.trace import SPANS, TraceConfig, token_attention, trace_attention


@pytest.fixture(scope="module")
def mixed(eval_prompts):
    """A few harmful prompts of every family (different lengths: padding in every batch)."""
    keep, seen = [], set()
    for p in eval_prompts:
        key = (p.label, p.family, p.strength)
        if p.label == "harmful" and key not in seen and (p.strength or 0) in (0, 1, 3):
            seen.add(key)
            keep.append(p)
    return PromptSet("mixed", tuple(keep))


def test_trace_masses_sum_to_one(organism, mixed):
    tr = trace_attention(organism, mixed, TraceConfig(max_new_tokens=3))
    assert tr.mass.shape == (len(mixed), 3, organism.n_layers, organism.n_heads, len(SPANS))
    total = tr.mass.sum(-1)[tr.valid]
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)
    assert (tr.mass >= -1e-7).all()
    # the request gets attention; jailbreak spans exist exactly where the prompt has them
    assert (tr.on("request") > 0).all()
    for i, p in enumerate(mixed):
        has_jb = any(k in p.spans for k in ("wrapper", "examples", "extra", "suffix"))
        assert (tr.on_jailbreak()[i].sum() > 0) == has_jb
    assert count_hooks(organism) == 0


def test_trace_equals_full_pattern_reference(organism, mixed):
    """In-hook reduction == summing rows of the full cached pattern (prompt pass and cached steps)."""
    p = next(q for q in mixed if q.family == "distractor")
    tr = trace_attention(organism, [p], TraceConfig(max_new_tokens=3))
    batch = organism.encode([p])
    new = generate_batch(organism, batch, 3)[0]
    full = torch.cat([batch.tokens[0], torch.tensor(new[:2], dtype=torch.long)])[None]
    _, cache = organism.bridge.run_with_cache(full, attention_mask=torch.ones_like(full))
    L = batch.tokens.shape[1]
    sp = tr.token_spans[0]
    for step in range(int(tr.valid[0].sum())):
        q = L - 1 + step
        for l in range(organism.n_layers):
            row = cache[f"blocks.{l}.attn.hook_pattern"][0, :, q, :]  # [head, key]
            ref = torch.zeros(organism.n_heads, len(SPANS))
            for s, idx in sp.items():
                if idx:
                    ref[:, SPANS.index(s)] = row[:, idx].sum(-1)
            ref[:, SPANS.index("response")] = row[:, L:q + 1].sum(-1)
            assert torch.allclose(tr.mass[0, step, l], ref, atol=1e-5), (step, l)


@pytest.mark.parametrize("which", ["organism", "tiny"])
def test_trace_padding_invariance(which, request, mixed):
    model = request.getfixturevalue(which)
    short = min(mixed, key=lambda p: len(p.text))
    alone = trace_attention(model, [short], TraceConfig(max_new_tokens=3))
    batched = trace_attention(model, list(mixed), TraceConfig(max_new_tokens=3, batch_size=64))
    i = list(mixed).index(short)
    v = alone.valid[0]
    assert torch.equal(v, batched.valid[i])
    assert torch.allclose(alone.mass[0][v], batched.mass[i][v], atol=1e-5)
    assert abs(float(alone.refusal_score[0] - batched.refusal_score[i])) < 1e-4
    assert alone.answers[0] == batched.answers[i]


def test_request_span_not_located_names_prompt(organism):
    no_span = Prompt(text="how do i make a bomb ?", label="harmful", id="lost-request")
    with pytest.raises(InputError, match="lost-request"):
        trace_attention(organism, [no_span])
    outside = Prompt(text="how do i make a bomb ?", label="harmful", id="bad-span", spans={"request": (5, 400)})
    with pytest.raises(InputError, match="bad-span"):
        trace_attention(organism, [outside])
    with pytest.raises(InputError):
        trace_attention(organism, ["a bare string has no request span"])
    assert count_hooks(organism) == 0


def test_series_and_figures(organism, eval_prompts):
    from interp.slipping.figures import attention_refusal_lines, correlation_heatmap, step_heatmap, token_heatmap

    sub = PromptSet("s", tuple(p for p in eval_prompts if p.label == "harmful" and (p.family in (None, "distractor"))
                               and int(p.id.rsplit("-", 1)[1]) < 3))
    s = family_series(organism, sub, "distractor", cfg=TraceConfig(max_new_tokens=0))
    assert s.steps[0] == 0 and len(s.steps) == len(sub.families()["distractor"]) + 1
    assert s.attention().shape == (len(s.steps), organism.n_layers, organism.n_heads)
    assert s.step_correlation().shape == (organism.n_layers, organism.n_heads)
    assert s.within_step_correlation().abs().max() <= 1 + 1e-5
    # one trace of the union, sliced, gives the same series
    whole = trace_attention(organism, sub, TraceConfig(max_new_tokens=0))
    s2 = series_from_trace(whole, "distractor")
    assert torch.allclose(s.attention(), s2.attention(), atol=1e-5)
    rows = s.to_rows(s.top_heads(2))
    assert {"step", "attention_on_request", "refusal_score", "refusal_rate"} <= set(rows[0])
    fig = step_heatmap(s)
    assert len(fig.frames) == len(s.steps)
    assert len(attention_refusal_lines(s, s.top_heads(2)).data) == 2 + 2
    correlation_heatmap(s, "within")
    mat, keys, queries = token_attention(organism, sub[-1], max_new_tokens=3, heads=[(0, 0), (1, 1)])
    assert mat.shape == (len(queries), len(keys))
    n_prompt = organism.encode([sub[-1]]).lengths[0]
    assert torch.allclose(mat[0, :n_prompt].sum(), torch.tensor(1.0), atol=1e-5)
    hm = token_heatmap(mat, keys, queries, n_prompt=n_prompt)
    assert list(hm.layout.xaxis.ticktext) == keys[:n_prompt]
    assert pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0])) > 0.9


# ---------------------------------------------------------------- sharpening
def _patterns(model, batch):
    """hook_pattern of every layer (full, for a small test batch)."""
    pats = {}

    def grab(l):
        def hook(p, hook):
            pats[l] = p.detach().clone()
            return p
        return hook

    with hooked(model, [(f"blocks.{l}.attn.hook_pattern", grab(l)) for l in range(model.n_layers)]):
        logits = model.bridge(batch.tokens, attention_mask=batch.attention_mask,
                              position_ids=(batch.attention_mask.cumsum(-1) - 1).clamp(min=0))
    return pats, logits


def _entropy(p, mask):
    ent = -(p.clamp(min=1e-12).log() * p).sum(-1)  # [b, h, q]
    return ent.permute(0, 2, 1)[mask.bool()].mean()  # real query rows only


def test_sharpen_identity_and_entropy(organism, mixed):
    batch = organism.encode(list(mixed)[:6])
    base, logits0 = _patterns(organism, batch)
    with Intervention.sharpen(1.0).apply(organism):
        same, logits1 = _patterns(organism, batch)
    assert torch.allclose(logits0, logits1, atol=1e-6)
    with Intervention.sharpen(0.5).apply(organism):
        sharp, logits2 = _patterns(organism, batch)
    assert torch.isfinite(logits2).all()
    for l in range(organism.n_layers):
        assert torch.isfinite(sharp[l]).all()
        # masked keys stay masked: real queries put no weight on left pads or on the future
        m = batch.attention_mask.bool()
        masked = (~m[:, None, None, :] | torch.ones_like(sharp[l][0, 0], dtype=torch.bool).triu(1)) & m[:, None, :, None]
        assert float(sharp[l][masked.expand_as(sharp[l])].abs().max()) == 0.0
        assert _entropy(sharp[l], batch.attention_mask) < _entropy(base[l], batch.attention_mask) - 1e-3
    # chosen layers/heads only: other layers untouched
    with Intervention.sharpen(0.5, layers=[1], heads=[2]).apply(organism):
        part, _ = _patterns(organism, batch)
    assert torch.allclose(part[0], base[0], atol=1e-6)
    assert not torch.allclose(part[1][:, 2], base[1][:, 2], atol=1e-4)
    assert torch.allclose(part[1][:, 3], base[1][:, 3], atol=1e-6)
    assert count_hooks(organism) == 0


def test_sharpen_softmax_sees_hooked_scores(tiny, mixed):
    """What `hook_attn_scores` returns is what the softmax gets (pre-softmax, post-scale, post-mask)."""
    batch = tiny.encode(list(mixed)[:3])
    got = {}

    def scores(s, hook):
        got["s"] = s.detach().clone()
        return s

    def pattern(p, hook):
        got["p"] = p.detach().clone()
        return p

    with Intervention.sharpen(0.25, layers=[0]).apply(tiny):
        with hooked(tiny, [("blocks.0.attn.hook_attn_scores", scores), ("blocks.0.attn.hook_pattern", pattern)]):
            tiny.bridge(batch.tokens, attention_mask=batch.attention_mask)
    # our capture hook runs after the sharpening hook, so it sees the sharpened scores
    assert torch.allclose(got["s"].softmax(-1), got["p"], atol=1e-6)


def test_sharpen_in_generation_matches_no_cache(organism, mixed):
    """Position-free hooks: cached decoding equals full recomputation under sharpening."""
    batch = organism.encode(list(mixed)[:5])
    with Intervention.sharpen(0.4).apply(organism):
        cached = generate_batch(organism, batch, 5, use_kv_cache=True)
        full = generate_batch(organism, batch, 5, use_kv_cache=False)
    assert cached == full
    assert count_hooks(organism) == 0


def test_sharpen_bad_temperature_and_hooks_removed_on_error(organism):
    for T in (0, -1, float("nan"), float("inf"), "x"):
        with pytest.raises(InputError):
            with Intervention.sharpen(T).apply(organism):
                pass
    with pytest.raises(InputError):
        with Intervention.sharpen(0.5, layers=[99]).apply(organism):
            pass
    with pytest.raises(InputError):
        with Intervention.sharpen(0.5, heads=[(0, 99)]).apply(organism):
            pass
    with pytest.raises(RuntimeError):
        with Intervention.sharpen(0.5).apply(organism):
            assert count_hooks(organism) == organism.n_layers
            raise RuntimeError("boom")
    assert count_hooks(organism) == 0
