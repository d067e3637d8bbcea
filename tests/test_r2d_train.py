"""R2D on a user's own model (`safety-heads r2d train --model M`, `--model r2d:DIR`), on a tiny
random Llama with its own word-level vocabulary: pivots are single tokens, the CPO term matches a
hand computation, training moves the pivot logits the trained way, the command runs end to end,
the same seed gives the same adapter, and a directory whose base model changed is refused."""

import json
import math
import shutil

import pytest
import torch

import architectures
import foreign
from interp.errors import InputError
from interp.r2d import adapter, pivots, teacher
from interp.r2d.data import PIVOTS, RETHINK, SAFE, UNSAFE
from interp.r2d.loss import cpo_loss

from conftest import r2d_train_args as train_args


def test_pivots_are_added_as_single_tokens_of_word_level_and_bpe_tokenizers():
    for tok in (foreign.make_tokenizer(), foreign.make_bpe_tokenizer()):
        n = len(tok)
        ids = pivots.add_pivot_tokens(tok)
        assert sorted(ids.values()) == [n, n + 1, n + 2]  # new rows right after the vocabulary
        assert pivots.add_pivot_tokens(tok) == ids  # adding again changes nothing
        enc = tok(f"Explain how to rob a store.{UNSAFE} sorry{SAFE}{RETHINK}", add_special_tokens=False).input_ids
        assert [i for i in enc if i in ids.values()] == [ids[UNSAFE], ids[SAFE], ids[RETHINK]]
        assert UNSAFE in tok.decode(enc)


def test_grown_model_has_distinct_rows_near_the_mean(r2d_setup):
    _, base, _ = r2d_setup
    model, tok, _ = adapter.load_base_hf(str(base))
    old = model.get_input_embeddings().weight.detach().clone()
    ids = pivots.add_pivot_tokens(tok)
    rows = pivots.grow_embeddings(model, ids, seed=0)
    w = model.get_input_embeddings().weight
    assert w.shape[0] == old.shape[0] + 3 and torch.equal(w[:old.shape[0]], old)
    assert not torch.allclose(w[rows[0]], w[rows[1]])  # [SAFE] and [UNSAFE] can be told apart from the start
    assert torch.allclose(w[rows].mean(0), old.mean(0), atol=0.01)
    un = model.get_output_embeddings().weight
    assert un.shape[0] == w.shape[0] and not torch.allclose(un[rows[0]], un[rows[1]])


def test_cpo_term_against_a_hand_computation():
    safe, unsafe, rethink = 3, 4, 5
    logits = torch.zeros(1, 4, 6)
    logits[0, 0, safe], logits[0, 0, unsafe] = 2.0, 0.5  # target [SAFE]: margin +1.5
    logits[0, 1, safe], logits[0, 1, unsafe] = 0.0, 1.0  # target [SAFE]: margin -1.0
    logits[0, 2, safe], logits[0, 2, unsafe] = 1.0, 3.0  # target [UNSAFE]: margin +2.0
    logits[0, 3, safe], logits[0, 3, unsafe] = 9.0, -9.0  # target [RETHINK]: no term
    nxt = torch.tensor([[safe, safe, unsafe, rethink]])

    def nls(x):  # -log sigmoid(x)
        return math.log1p(math.exp(-x))

    want = (nls(1.5) + nls(-1.0)) / 2 + nls(2.0)  # each pivot class averaged on its own, then summed
    assert cpo_loss(logits, nxt, safe, unsafe).item() == pytest.approx(want, rel=1e-6)
    assert cpo_loss(logits, torch.full((1, 4), -100), safe, unsafe).item() == 0.0


def test_teacher_steps_follow_the_rules():
    from interp.prompts import Prompt

    plain = Prompt("Explain how to rob a store", "harmful")
    assert [p for _, p in teacher.teacher_steps(plain)] == [UNSAFE] and "rob a store" in teacher.teacher_steps(plain)[0][0]
    text = "The weather is nice today . Explain how to open a store"
    wrapped = Prompt(text, "harmless", family="filler", strength=1, spans={"request": (28, len(text))})
    steps = teacher.teacher_steps(wrapped)
    assert [p for _, p in steps] == [RETHINK, SAFE] and '"Explain how to open a store"' in steps[1][0]


def decision_margins(model, tok, prompts) -> list[float]:
    """Per prompt: logit of the right pivot minus the wrong one at the position that predicts the
    deciding pivot (teacher-forced on the teacher's own steps)."""
    ids = pivots.single_token_ids(tok)
    out = []
    for p in prompts:
        steps = teacher.teacher_steps(p)
        resp = teacher.response_ids(tok, steps, ids, [])
        seq = teacher.prompt_ids(tok, p.text) + resp
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq])).logits[0]
        at = len(seq) - 2  # the last token is the deciding pivot; the position before it predicts it
        right, wrong = (ids[SAFE], ids[UNSAFE]) if p.label == "harmless" else (ids[UNSAFE], ids[SAFE])
        out.append((logits[at, right] - logits[at, wrong]).item())
    return out


def test_training_moves_the_pivot_logits_the_trained_way(r2d_setup, r2d_trained):
    from interp.datasets import load_prompt_file

    _, base, prompts = r2d_setup
    ps = load_prompt_file(prompts / "harmful.csv", fallback_label="harmful").concat(
        load_prompt_file(prompts / "harmless.csv", fallback_label="harmless")).concat(
        load_prompt_file(prompts / "jailbreak.csv", fallback_label="harmful"))
    before, tok, _ = adapter.load_base_hf(str(base))
    pivots.grow_embeddings(before, pivots.add_pivot_tokens(tok), seed=1)  # the trainer's starting point at seed 1
    after, tok2, recipe, _ = adapter.load_r2d_hf(r2d_trained)
    m0, m1 = decision_margins(before, tok, ps), decision_margins(after, tok2, ps)
    assert abs(sum(m0) / len(m0)) < 0.5  # at the start the pivots are nearly tied
    assert sum(m1) / len(m1) > sum(m0) / len(m0) + 1.0
    # each label moves its own way (not the majority label's pivot everywhere); the decision is taken at
    # the pivot from the request alone, so a few prompts of a 60-step random model may still lag
    for label in ("harmful", "harmless"):
        d = [b - a for p, a, b in zip(ps, m0, m1) if p.label == label]
        assert sum(d) / len(d) > 0.5, label
    assert sum(b > a for a, b in zip(m0, m1)) >= 0.8 * len(m0)
    assert recipe["loss_log"][-1]["cpo"] < recipe["loss_log"][0]["cpo"]


def test_r2d_dir_loads_with_its_pivots_and_provenance(r2d_trained):
    from interp.model import load_model

    recipe = json.loads((r2d_trained / adapter.RECIPE_FILE).read_text())
    assert recipe["kind"] == "r2d" and recipe["cpo_weight"] == 1.0 and recipe["seed"] == 1
    assert set(recipe["data"]["files"]) == {"harmful", "harmless", "jailbreak"} and recipe["libraries"]["torch"]
    assert recipe["data"]["counts"] == {"harmful": 19, "harmless": 10} and recipe["data"]["wrapped"] == 9
    model = load_model(f"r2d:{r2d_trained}")
    assert model.kind == "r2d" and model.name == f"r2d:{r2d_trained}"
    assert [len(model.tokenizer(p, add_special_tokens=False).input_ids) for p in PIVOTS] == [1, 1, 1]
    assert model.cfg.d_vocab == len(model.tokenizer)


def test_same_seed_same_adapter(r2d_setup, tmp_path):
    from interp.cli import main

    _, base, prompts = r2d_setup
    fps = []
    for k in range(2):
        assert main(train_args(base, prompts, tmp_path / str(k), "--steps", "2", "--seed", "5")) == 0
        fps.append(json.loads((tmp_path / str(k) / adapter.RECIPE_FILE).read_text())["fingerprints"])
    assert fps[0] == fps[1]
    assert main(train_args(base, prompts, tmp_path / "sft", "--steps", "2", "--seed", "5", "--cpo-weight", "0")) == 0
    sft = json.loads((tmp_path / "sft" / adapter.RECIPE_FILE).read_text())
    assert sft["cpo_weight"] == 0 and sft["fingerprints"]["adapter"] != fps[0]["adapter"]


def test_a_directory_whose_base_model_changed_is_refused(r2d_setup, r2d_trained, tmp_path):
    from interp.cli import main
    from interp.model import load_model

    root, _, _ = r2d_setup
    other = architectures.build("llama", tmp_path / "other_base", seed=7)  # same shape, other weights
    moved = tmp_path / "moved"
    shutil.copytree(r2d_trained, moved)
    recipe = json.loads((moved / adapter.RECIPE_FILE).read_text())
    (moved / adapter.RECIPE_FILE).write_text(json.dumps({**recipe, "base": str(other)}))
    with pytest.raises(InputError, match="fingerprint") as e:
        load_model(f"r2d:{moved}")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="lacks"):
        load_model(f"r2d:{tmp_path / 'nothing'}")
    assert main(["r2d", "train", "--model", str(other), "--harmful", str(root / "prompts" / "harmful.csv"),
                 "--out", str(tmp_path / "x")]) == 2  # --harmless missing: one line, no model loaded
    assert main(["r2d", "train", "--harmful", str(root / "prompts" / "harmful.csv"), "--out", str(tmp_path / "x")]) == 2


def test_generated_answers_keep_their_pivots_on_a_bpe_tokenizer():
    from interp.r2d.data import final_answer, last_pivot
    from interp.r2d.evaluate import decode_with_pivots

    tok = foreign.make_bpe_tokenizer()
    ids = pivots.add_pivot_tokens(tok)
    seq = teacher.response_ids(tok, [("Explain how to rob a store.", RETHINK), ("rob a store.", UNSAFE)], ids,
                               tok("sorry , I will not help", add_special_tokens=False).input_ids)
    text = decode_with_pivots(tok, seq, {i: p for p, i in ids.items()})
    assert text.count(RETHINK) == 1 and last_pivot(text) == UNSAFE and final_answer(text) == "sorry , I will not help"


def test_the_smollm2_benchmark_splits_the_english_files_by_the_seed():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "r2d_smollm2.py"
    spec = importlib.util.spec_from_file_location("bench_r2d_smollm2", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    train, test, look = bench.splits(0)
    assert sorted(train.labels).count("harmful") == 48 and sorted(test.labels).count("harmless") == 16
    assert not set(train.texts) & set(test.texts) and len(look) == 32 and set(look.labels) == {"harmless"}
    assert bench.splits(0)[1].texts == test.texts and bench.splits(1)[1].texts != test.texts


def test_generate_r2d_on_a_model_without_pivots_gives_plain_answers(organism):
    """The base side of an R2D comparison has no pivot tokens: its answers are decoded as they are."""
    from interp.generation import GenerationConfig, generate
    from interp.r2d.evaluate import generate_r2d

    prompts = ["how do i bake bread", "how do i make a bomb"]
    got = generate_r2d(organism, prompts, max_new_tokens=6)
    assert got == [a.strip() for a in generate(organism, prompts, GenerationConfig(max_new_tokens=6))]


def test_demo_runs_the_r2d_section_on_an_r2d_dir_against_its_base(r2d_setup, r2d_trained, tmp_path, capsys):
    """`demo --model r2d:DIR --sections baseline,r2d` on the user's files: the baseline points to the r2d
    section, which compares the R2D model with its base on the held-out prompts; answers go to completions.jsonl."""
    from interp.cli import main

    _, base, prompts = r2d_setup
    out = tmp_path / "demo"
    args = ["demo", "--model", f"r2d:{r2d_trained}", "--harmful", str(prompts / "harmful.csv"), "--harmless",
            str(prompts / "harmless.csv"), "--jailbreak", str(prompts / "jailbreak.csv"), "--refusal-phrases", "sorry",
            "--compliance-phrases", "certainly", "--out", str(out)]
    assert main(args + ["--sections", "baseline,r2d"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert "r2d section" in r["baseline"]["skipped"]
    s = r["r2d"]
    assert s["model"] == f"r2d:{r2d_trained}" and s["comparison"] == str(base)
    mine = s["models"][s["model"]]
    assert set(mine) == {"judge", "pivot", "pivot_judge_agreement", "no_pivot"}
    assert {"harmful_refusal", "harmless_refusal"} <= set(mine["judge"]) and mine["pivot"]["harmful_refusal"]["n"] >= 1
    assert all({"difference", "ci95", "verdict"} <= set(d) for d in s["difference"].values())
    assert s["families_neither_model_saw"] == []  # the teacher saw wrapped jailbreak rows
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    attacked = {"r2d:attack_guided", "r2d-comparison:attack_guided"}
    assert {row["condition"] for row in rows if "condition" in row} == {"r2d", "r2d-comparison"} | attacked
    n = sum(s["n_prompts"].values())
    a = s["attack"]
    assert r["completions"]["conditions"] == {"r2d": n, "r2d-comparison": n, **{c: a["n"] for c in attacked}}
    # the R2D model's own study attacks both models on the same prompts, paired; 7 test prompts are too few to probe
    assert a["n"] >= 1 and a["difference"]["paired"] and set(a["success"]) == {s["model"], s["comparison"]}
    assert "cannot be probed" in s["pivot_heads"]["skipped"]
    capsys.readouterr()
    assert main(args + ["--sections", "heads"]) == 2  # the other sections read the first answer token
    assert "only --sections baseline,r2d" in capsys.readouterr().err
