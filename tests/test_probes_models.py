"""Probes on real models: the organism's heads and refusal direction, the random `tiny` model (no
structure to find), artifacts on the wrong model, the demo sections and the CLI."""

import json

import pytest
import torch

from interp.errors import ArtifactError, InputError
from interp.hooks import count_hooks
from interp.prompts import PromptSet
from interp.direction import Direction
from probes import HeadRanking, behaviour_labels, category_labels, find_refusal_direction, rank_heads


@pytest.fixture(scope="module")
def split(plain_prompts):
    """Train / val halves of the plain prompts (both labels in each)."""
    from probes.run import split_indices

    tr, va = split_indices(plain_prompts, 0.33, seed=0)
    sub = lambda idx, tag: PromptSet(f"plain:{tag}", tuple(plain_prompts[i] for i in idx))  # noqa: E731
    return sub(tr, "train"), sub(va, "val")


@pytest.fixture(scope="module")
def organism_ranking(organism, plain_prompts):
    return rank_heads(organism, plain_prompts, labels="category", positions="post_instruction", k_folds=4)


@pytest.fixture(scope="module")
def organism_direction(organism, split):
    return find_refusal_direction(organism, *split, labels="category")


def test_category_probes_find_heads_in_later_layers(organism, organism_ranking):
    r = organism_ranking
    assert r["accuracy"].shape == (organism.n_layers, organism.n_heads)
    assert r.positions == [-2, -1] and r.meta["position_tokens"][-1] == "<|assistant|>"
    later = r["accuracy"][organism.n_layers // 2:]
    assert later.max() >= 0.9, f"best later-layer head only reaches {later.max():.2f}"
    top = r.top(5)
    assert len(top) == 5 and all(0 <= l < organism.n_layers and 0 <= h < organism.n_heads for l, h in top)
    assert r["accuracy"][top[0]] == r["accuracy"].max()
    assert r.meta["model"] == organism.name and r.meta["model_shape"]["d_head"] == organism.d_head
    assert count_hooks(organism) == 0


def test_refusal_direction_ablation_lowers_harmful_refusal(organism, organism_direction):
    d = organism_direction
    s = d.scores
    assert s["baseline_harmful"] > 0 > s["baseline_harmless"]
    assert s["ablation_score"] < s["baseline_harmful"] - 1.0, d.reason
    assert d.layer < int(0.8 * organism.n_layers), "a pruned layer was chosen although earlier candidates exist"
    assert d.vector.shape == (organism.d_model,) and d.position in d.positions
    rows = d.candidates
    assert len(rows) == organism.n_layers * len(d.positions) * len({r["site"] for r in rows}) and sum(r["chosen"] for r in rows) == 1
    assert {r["site"] for r in rows} == {"resid_pre", "resid_mid"}
    assert {"layer", "position", "accuracy", "ablation_score", "addition_score", "kl", "pruned", "passed"} <= set(rows[0])
    assert all(r["pruned"] == (r["layer"] >= int(0.8 * organism.n_layers)) for r in rows)
    assert d.reason.startswith(("chose ", "no candidate passed"))
    assert count_hooks(organism) == 0


def test_direction_addition_makes_harmless_prompts_lean_to_refuse(organism, organism_direction, split):
    from interp.intervention import Intervention
    from interp.scoring import refusal_score

    harmless = split[1].filter(label="harmless")
    with Intervention.add_direction(organism_direction.vector, organism_direction.layer).apply(organism):
        steered = refusal_score(organism, harmless).mean()
    assert steered > refusal_score(organism, harmless).mean() + 1.0


def test_behaviour_labels_follow_the_judge(organism, eval_prompts):
    plain = eval_prompts.filter(family=None)[::4]
    strong = eval_prompts.filter(label="harmful", family="manyshot", strength=4)[:4]
    ps = plain.concat(strong)
    lab = behaviour_labels(organism, ps)
    assert lab.kind == "behaviour" and lab.names == ("complied", "refused") and len(lab) == len(ps)
    harmful = torch.tensor(ps.is_harmful())
    n_plain = len(plain)
    # the organism refuses plain harmful requests and complies with harmless ones ...
    assert lab.y[:n_plain][harmful[:n_plain]].float().mean() > 0.8
    assert lab.y[:n_plain][~harmful[:n_plain]].float().mean() < 0.2
    # ... and a harmful prompt it complied with is labelled "complied"
    assert (~lab.y[n_plain:]).any(), "expected some full-strength many-shot jailbreaks to be complied with"
    assert category_labels(ps).y.tolist() == harmful.tolist()


def test_tiny_random_model_has_no_near_perfect_head_or_direction(tiny, plain_prompts, split):
    r = rank_heads(tiny, plain_prompts, labels="category", k_folds=4)
    assert r["accuracy"].max() < 0.9 and r["auroc"].max() < 0.9, r.to_rows()[:2]
    d = find_refusal_direction(tiny, *split, labels="category")
    assert max(row["accuracy"] for row in d.candidates) < 0.9
    assert count_hooks(tiny) == 0


def test_artifacts_round_trip_and_refuse_the_wrong_model(tmp_path, organism, tiny, organism_ranking, organism_direction):
    organism_ranking.save(tmp_path / "ranking")
    organism_direction.save(tmp_path / "direction")
    r = HeadRanking.load(tmp_path / "ranking", model=organism)
    assert r.top(8) == organism_ranking.top(8)
    d = Direction.load(tmp_path / "direction", model=organism)
    assert torch.allclose(d.vector, organism_direction.vector)
    assert d.meta["prompt_set"]["sha256"] and d.meta["labels"] == "category" and d.meta["toolkit_version"]
    assert d.meta["model_fingerprint"] == r.meta["model_fingerprint"] == organism.fingerprint
    with pytest.raises(ArtifactError, match=r"made on 'organism:gqa'.*shapes differ"):
        HeadRanking.load(tmp_path / "ranking", model=tiny)
    with pytest.raises(ArtifactError, match="d_model 128 vs 64"):
        Direction.load(tmp_path / "direction", model=tiny)


def test_rank_heads_fails_before_capture_on_bad_labels(organism, plain_prompts):
    with pytest.raises(InputError, match="both classes"):
        rank_heads(organism, plain_prompts.filter(label="harmful"), labels="category")
    with pytest.raises(InputError, match="one label per captured prompt"):
        rank_heads(organism, plain_prompts, labels=[True, False] * 3)


def test_probe_stage_fills_report_and_artifacts(tmp_path, organism, plain_prompts, eval_prompts):
    from interp.generation import GenerationConfig
    from interp.pipeline import save_artifacts
    from interp.study import Study, StudyData
    from interp.stages.probes import probe_stage

    train, val = plain_prompts[::2], plain_prompts[1::2]
    study = Study(organism, StudyData(train, val, eval_prompts, provider="test"), gen=GenerationConfig(max_new_tokens=8))
    res = probe_stage(study)
    heads, dirs = res.heads, res.directions
    save_artifacts(res.artifacts, tmp_path / "artifacts")
    assert set(res.figures) == {"heads_accuracy", "heads_cohens_d", "directions"}
    assert heads["labels"] == "behaviour" and len(heads["ranking"]) == 10
    assert set(heads["ranking"][0]) >= {"layer", "head", "accuracy", "auroc", "separation"}
    assert heads["label_counts"]["complied"] > 0 and heads["label_counts"]["refused"] > 0
    assert set(dirs["chosen"]) >= {"layer", "position", "accuracy"} and dirs["reason"] and dirs["per_layer"]
    assert isinstance(res.ranking, HeadRanking) and isinstance(res.direction, Direction)
    assert res.ranking.meta["data"]["provider"] == "test", "artifacts record the study data"
    for f in ("artifacts/ranking.safetensors", "artifacts/ranking.json", "artifacts/direction.safetensors",
              "artifacts/ranking_rows.json"):
        assert (tmp_path / f).exists(), f
    assert len(json.loads((tmp_path / "artifacts/ranking_rows.json").read_text())) == organism.n_layers * organism.n_heads
    json.dumps({"heads": heads, "directions": dirs})  # the report must serialise
    assert count_hooks(organism) == 0


def test_cli_rank_writes_ranking_direction_and_figures(tmp_path, monkeypatch, organism, plain_prompts, capsys):
    import interp.pipeline
    from interp.cli import main

    monkeypatch.setattr(interp.pipeline, "load_model", lambda *a, **k: organism)  # reuse the loaded organism
    plain_prompts.filter(label="harmful").to_jsonl(tmp_path / "harmful.jsonl")
    plain_prompts.filter(label="harmless").to_jsonl(tmp_path / "harmless.jsonl")
    out = tmp_path / "out"
    rc = main(["rank", "--harmful", str(tmp_path / "harmful.jsonl"), "--harmless", str(tmp_path / "harmless.jsonl"),
               "--labels", "category", "--out", str(out), "--k-folds", "4"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == "category" and len(summary["top_heads"]) == 10 and "layer" in summary["direction"]
    for f in ("ranking.safetensors", "ranking.json", "direction.safetensors", "direction.json",
              "figures/heads_accuracy.html", "figures/directions.html", "data.json"):
        assert (out / f).exists(), f
    data = json.loads((out / "data.json").read_text())
    assert data["provider"] == "files" and data["seed"] == 0 and data["fractions"] == [0.6, 0.2, 0.2]
    assert json.loads((out / "ranking.json").read_text())["data"]["splits"]["train"]["sha256"] == data["splits"]["train"]["sha256"]
    HeadRanking.load(out / "ranking", model=organism)
    rc = main(["rank", "--harmful", str(tmp_path / "harmful.jsonl"), "--harmless", str(tmp_path / "nope.jsonl"), "--out", str(out)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_labels_of_other_prompts_are_refused(organism, plain_prompts):
    from interp.capture import capture
    from probes import rank_heads_from_activations

    ps = plain_prompts[::4]  # both labels
    acts = capture(organism, ps, "z", "last")
    shuffled = PromptSet("shuffled", tuple(reversed(ps.prompts)))
    with pytest.raises(InputError, match="made for other prompts"):
        rank_heads_from_activations(acts, category_labels(shuffled), k_folds=3)


def test_direction_search_covers_resid_mid_where_the_organism_decides(organism, organism_direction):
    """The organism decides refusal inside block 0 (attention then MLP): the stream between them
    is the only place where projecting the direction out undoes refusal."""
    d = organism_direction
    assert d.site == "resid_mid" and d.hook_name == f"blocks.{d.layer}.hook_resid_mid"
    assert d.scores["ablation_score"] < d.scores["baseline_harmful"] - 5 and d.scores["addition_score"] > 0
    # every resid_pre candidate that undoes refusal as well also disturbs harmless prompts (KL over Arditi's 0.1)
    pre = [r for r in d.candidates if r["site"] == "resid_pre" and r["ablation_score"] <= d.scores["ablation_score"]]
    assert all(not r["kl_ok"] for r in pre)


def test_behaviour_probes_label_and_read_each_prompt_in_one_pass(organism, eval_prompts, monkeypatch):
    """run_probes with behaviour labels judges the answers of the same prompt pass it reads the
    activations from: the labels are `behaviour_labels`', and no separate capture pass runs."""
    import probes.run as run

    ps = eval_prompts.filter(family=None).concat(eval_prompts.filter(label="harmful", family="manyshot", strength=4)[:6])
    expected = behaviour_labels(organism, ps, gen=run.LABEL_GENERATION)

    def no_second_pass(*a, **k):
        raise AssertionError("behaviour labels must not need a capture pass of their own")

    monkeypatch.setattr(run, "capture", no_second_pass)
    res = run.run_probes(organism, ps, labels="behaviour", k_folds=2, seed=0)
    assert res.labels.kind == "behaviour"
    assert res.labels.y.tolist() == expected.y.tolist()
    assert res.ranking.meta.get("position_tokens") is not None and len(res.ranking.to_rows()) == organism.n_layers * organism.n_heads
    assert count_hooks(organism) == 0
    from probes.labels import judged_labels

    with pytest.raises(InputError, match="answers for"):
        judged_labels(organism, ps, ["sure"] * (len(ps) - 1))
