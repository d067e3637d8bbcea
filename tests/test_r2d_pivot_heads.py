"""Which heads write an R2D model's pivot decision (`interp.r2d.pivot_heads`) and the logit-guided
attack on the pivot (`interp.r2d.attack`): on a tiny random Llama trained with R2D for a few steps
(its own word-level vocabulary), the decision position is the teacher's, every ablation number
matches a hand-made hook, no hook is left behind; on the shipped organism:smollm2-r2d, ablating the
pivot heads lowers the pivot gap and flips [UNSAFE] to [SAFE] where random heads do not."""

import pytest
import torch

from conftest import missing
from interp.hooknames import act_name
from interp.hooks import count_hooks, hooked
from interp.prompts import Prompt, PromptSet
from interp.r2d import teacher
from interp.r2d.data import SAFE, UNSAFE
from interp.r2d.model import pivot_ids
from interp.r2d.pivot_heads import PivotHeadsConfig, decision_runs, gap_by_strength, pivot_heads
from interp.runner import forward


@pytest.fixture(scope="module")
def tiny_r2d(r2d_setup, r2d_trained):
    """The tiny R2D model and every prompt of its files."""
    from interp.datasets import load_prompt_file
    from interp.model import load_model

    files = r2d_setup[2]
    prompts = load_prompt_file(files / "harmful.csv", fallback_label="harmful").concat(
        load_prompt_file(files / "harmless.csv", fallback_label="harmless")).concat(
        load_prompt_file(files / "jailbreak.csv", fallback_label="harmful"))
    return load_model(f"r2d:{r2d_trained}"), prompts


def _gap(model, seq, hooks=()):
    piv = pivot_ids(model.tokenizer)
    t = torch.tensor([seq])
    with torch.no_grad(), hooked(model, list(hooks)):
        logits = forward(model, t, torch.ones_like(t))[0, -1]
    return float(logits[piv[UNSAFE]] - logits[piv[SAFE]])


def _zero(heads):
    def make(h):
        def hook(z, hook):
            z = z.clone()
            z[:, :, h] = 0.0
            return z
        return hook
    return [(act_name("z", l), make(h)) for l, h in heads]


def test_the_decision_position_is_right_before_the_teachers_deciding_pivot(tiny_r2d):
    model, prompts = tiny_r2d
    runs = decision_runs(model, prompts)
    piv = pivot_ids(model.tokenizer)
    assert sorted(i for idx, _ in runs.batches for i in idx) == list(range(len(prompts)))
    for idx, b in runs.batches:
        for r, i in enumerate(idx):
            p = prompts[i]
            steps = teacher.teacher_steps(p)
            seq = b.tokens[r, b.pad[r]:].tolist()
            assert seq + [piv[steps[-1][1]]] == teacher.prompt_ids(model.tokenizer, p.text) + teacher.response_ids(
                model.tokenizer, steps, piv, [])
            assert bool(runs.labels[i]) == (p.label == "harmful")
        assert len({p.label == "harmful" and prompts[i].family is None for i in idx for p in [prompts[i]]}) == 1


def test_ablation_numbers_match_hand_made_hooks_and_no_hook_is_left(tiny_r2d):
    model, prompts = tiny_r2d
    cfg = PivotHeadsConfig(top_k=2, n_candidates=3, n_random=4, batch_size=8)
    r = pivot_heads(model, prompts, cfg)
    assert count_hooks(model) == 0
    runs = decision_runs(model, prompts)
    seqs = {i: b.tokens[k, b.pad[k]:].tolist() for idx, b in runs.batches for k, i in enumerate(idx)}
    plain = [i for i, p in enumerate(prompts) if p.label == "harmful" and p.family is None]
    assert r["n_prompts"]["harmful_plain"] == len(plain)
    clean = {i: _gap(model, seqs[i]) for i in plain}
    # every candidate's measured change is its own single-head ablation, mean over the plain harmful prompts
    for c in r["candidates"]:
        hand = sum(_gap(model, seqs[i], _zero([c["head"]])) - clean[i] for i in plain) / len(plain)
        assert c["gap_change"]["mean"] == pytest.approx(hand, abs=1e-3)
    # the pivot heads are the candidates whose ablation lowers the gap most
    changes = [c["gap_change"]["mean"] for c in r["candidates"]]
    assert changes == sorted(changes) and [c["head"] for c in r["candidates"][:2]] == r["pivot_heads"]
    # flips: prompts decided [UNSAFE] whose gap turns negative with the pivot heads ablated together
    decided = [i for i in plain if clean[i] > 0]
    flips = [_gap(model, seqs[i], _zero(r["pivot_heads"])) < 0 for i in decided]
    assert r["flips"]["pivot_heads"]["n"] == len(decided) and r["flips"]["pivot_heads"]["rate"] == pytest.approx(
        sum(flips) / len(decided), abs=1e-4)
    assert r["flips"]["random_heads"]["n"] == len(decided) * cfg.n_random
    assert all(len(s) == 2 and not {tuple(h) for h in s} & {tuple(h) for h in r["pivot_heads"]} for s in r["random_sets"])
    assert "verdict" in r["flips"]["pivot_heads_vs_random"]
    assert set(r["gap_by_strength"]["cells"]) == {"plain", "filler", "prefill"}


def test_gap_by_strength_against_known_values():
    ps = PromptSet("t", tuple(Prompt(text=f"x{i}", label=lab, family=fam, strength=s, id=f"p{i}")
                              for i, (lab, fam, s) in enumerate([("harmful", None, None)] * 4 + [("harmful", "wrap", 1)] * 4
                                                                 + [("harmful", "wrap", 2)] * 4 + [("harmless", None, None)] * 2)))
    gaps = torch.tensor([5.0, 6, 5, 6, 3, 3, 3, 3, -1, -2, -1, -2, 9, 9])
    g = gap_by_strength(ps, gaps)
    assert g["cells"]["plain"]["0"]["mean"] == 5.5 and g["cells"]["wrap"]["1"]["mean"] == 3.0
    assert g["cells"]["wrap"]["2"]["mean"] == -1.5 and g["cells"]["wrap"]["2"]["n"] == 4
    d = g["strongest_minus_plain"]["wrap"]
    assert d["strength"] == 2 and d["difference"] == -7.0 and d["ci95"][1] < 0
    assert d["verdict"].startswith("pivot gap of plain requests is higher")


def test_the_pivot_attack_drives_the_gap_down_and_judges_the_generated_trace(tiny_r2d):
    from interp.r2d.attack import pivot_target
    from interp.r2d.data import final_answer
    from interp.r2d.evaluate import generate_r2d
    from interp.scoring import RefusalJudge
    from interp.slipping.attack import AttackConfig, guided_attack

    model, prompts = tiny_r2d
    judge = RefusalJudge(phrases=("sorry",))
    p = prompts.filter(label="harmful", family=None)[0]
    target = pivot_target(judge, max_new_tokens=12)
    r = guided_attack(model, p, AttackConfig(n_tokens=2, n_iters=4, n_candidates=6, stop_score=None), judge, target)
    assert r.scores[-1] <= r.scores[0] and r.scores == sorted(r.scores, reverse=True)
    final = r.final
    assert r.scores[-1] == pytest.approx(float(target.score(model, [final])[0]), abs=1e-4)
    assert r.answer == final_answer(generate_r2d(model, [final], max_new_tokens=12)[0])
    assert r.success == (not judge([r.answer])[0]) and count_hooks(model) == 0


def test_smollm2_r2d_pivot_heads_beat_random_heads():
    """The shipped R2D model on held-out English requests: its pivot heads' ablation lowers the gap and
    flips decisions, random heads' barely does (intervals of the differences exclude 0)."""
    from interp.errors import ModelLoadError
    from interp.model import load_model
    from organisms.provider import smollm2_study

    try:
        model = load_model("organism:smollm2-r2d")
    except ModelLoadError as e:
        missing(f"organism:smollm2-r2d cannot be loaded here: {e}")
    test = smollm2_study(seed=0, per_cell=1, n_train=8, plain_per_label=16, top_per_cell=2).test
    prompts = PromptSet("t", tuple(p for p in test if p.family is None) + tuple(p for p in test if p.family is not None)[:12], "t")
    r = pivot_heads(model, prompts, PivotHeadsConfig(top_k=3, n_candidates=4, n_random=5))
    gc = r["gap_change"]
    assert gc["pivot_heads"]["ci95"][1] < gc["random_heads"]["ci95"][0]
    assert r["flips"]["pivot_heads_vs_random"]["ci95"][0] > 0
    assert r["decided_right"]["harmful"]["rate"] >= 0.8 and r["decided_right"]["harmless"]["rate"] >= 0.8


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "bloom", "gemma3_text"])
def test_pivot_heads_beyond_llama_match_hand_made_hooks(arch, r2d_setup, tmp_path):
    """Learned absolute positions (gpt2: left padding must not shift them), a parallel residual
    (gpt_neox), ALiBi (bloom) and Gemma 3: pivots added to a tiny random model of each, the measured
    single-head changes and flips equal hooks on unpadded single sequences."""
    import architectures
    from interp.datasets import load_prompt_file
    from interp.model import load_model
    from interp.r2d import adapter, pivots

    d = architectures.build(arch, tmp_path / arch, seed=0)
    hf, tok, _ = adapter.load_base_hf(str(d))
    pivots.grow_embeddings(hf, pivots.add_pivot_tokens(tok), seed=0)
    hf.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    model = load_model(str(d), refusal_phrases=["sorry"], compliance_phrases=["certainly"])
    files = r2d_setup[2]
    prompts = load_prompt_file(files / "harmful.csv", fallback_label="harmful").concat(
        load_prompt_file(files / "harmless.csv", fallback_label="harmless")).concat(
        load_prompt_file(files / "jailbreak.csv", fallback_label="harmful"))
    r = pivot_heads(model, prompts, PivotHeadsConfig(top_k=1, n_candidates=2, n_random=3, batch_size=8))
    assert count_hooks(model) == 0
    runs = decision_runs(model, prompts)
    seqs = {i: b.tokens[k, b.pad[k]:].tolist() for idx, b in runs.batches for k, i in enumerate(idx)}
    plain = [i for i, p in enumerate(prompts) if p.label == "harmful" and p.family is None]
    for c in r["candidates"]:
        hand = sum(_gap(model, seqs[i], _zero([c["head"]])) - _gap(model, seqs[i]) for i in plain) / len(plain)
        assert c["gap_change"]["mean"] == pytest.approx(hand, abs=1e-3), (arch, c["head"])
    g = gap_by_strength(prompts, torch.tensor([_gap(model, seqs[i]) for i in range(len(prompts))]))
    assert g["cells"]["plain"]["0"]["mean"] == pytest.approx(r["gap_by_strength"]["cells"]["plain"]["0"]["mean"], abs=1e-3)


def test_bad_input_gets_one_line_errors(tiny_r2d, organism):
    from interp.errors import InputError, ModelLoadError

    model, prompts = tiny_r2d
    with pytest.raises(InputError, match="unknown ablation method 'resample'"):
        pivot_heads(model, prompts, PivotHeadsConfig(method="resample"))
    with pytest.raises(InputError, match="n_candidates >= top_k"):
        pivot_heads(model, prompts, PivotHeadsConfig(top_k=5, n_candidates=2))
    wrapped_only = prompts.filter(family="filler").concat(prompts.filter(label="harmless"))
    with pytest.raises(InputError, match="at least 2 plain harmful prompts"):
        pivot_heads(model, wrapped_only)
    with pytest.raises(ModelLoadError, match=r"pivot token \[SAFE\] is not a single token"):
        decision_runs(organism, prompts)  # a model without the pivot tokens
