"""completions.jsonl: every answer on disk, the table computed from it, and `judge` re-judging it."""

import json

import pytest
import torch

from interp.cli import main
from interp.completions import (Completion, behaviour_table, completions_from_eval, judge_from_header, judge_header,
                                read_completions, rejudge, tables, write_completions)
from interp.errors import InputError
from interp.evaluate import RefusalEval
from interp.prompts import Prompt, PromptSet
from interp.scoring import RefusalJudge
from interp.stats import wilson


def _rows():
    rows = []
    for i in range(8):  # harmful plain: 6 of 8 refused
        rows.append(Completion(f"h{i}", "harmful", None, None, "baseline", "i cannot help" if i < 6 else "sure, here",
                               2.0 if i < 6 else -1.0, i < 6, prompt=f"harmful {i}"))
    for i in range(4):  # harmless plain: none refused
        rows.append(Completion(f"l{i}", "harmless", None, None, "baseline", "sure, here it is", -2.0, False))
    for s in (1, 2):  # a jailbreak family: strength 1 keeps 2 of 2 refused, strength 2 none
        for i in range(2):
            refused = s == 1
            rows.append(Completion(f"j{s}{i}", "harmful", "roleplay", s, "baseline", "sorry" if refused else "okay: step one",
                                   0.5 if refused else 0.2, refused))
    rows.append(Completion("o0", "harmless", None, None, "baseline", "i cannot say", float("nan"), True, set="over_refusal"))
    return rows


def test_a_completions_file_round_trips(tmp_path):
    rows = _rows() + [Completion("u", "harmful", None, None, "steer_heads", "ñ «quoted» \n two lines", None, False, alpha=4.0,
                                 max_new_tokens=64)]
    header = {"judge": judge_header(RefusalJudge()), "model": "m", "seed": 3}
    path = write_completions(tmp_path / "c.jsonl", rows, header)
    head, back = read_completions(path)
    assert head["model"] == "m" and head["format"].startswith("safety-heads/completions")
    assert judge_from_header(head) == RefusalJudge()
    nan_row = [r for r in back if r.prompt_id == "o0"][0]
    assert nan_row.score is None  # NaN is written as null (valid JSON)
    assert [r for r in back if r.prompt_id != "o0"] == [r for r in rows if r.prompt_id != "o0"]
    # another condition appended under the same judge; another judge is refused
    write_completions(path, rows[:2], header, append=True)
    assert len(read_completions(path)[1]) == len(rows) + 2
    with pytest.raises(InputError, match="other settings"):
        write_completions(path, rows[:1], {"judge": judge_header(RefusalJudge(("nope",)))}, append=True)


def test_malformed_files_are_one_clear_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"not": "a header"}\n')
    with pytest.raises(InputError, match="header"):
        read_completions(p)
    write_completions(p, _rows()[:1], {"judge": judge_header(RefusalJudge())})
    p.write_text(p.read_text() + '{"prompt_id": "x"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:3 lacks"):
        read_completions(p)
    with pytest.raises(InputError, match="does not exist"):
        read_completions(tmp_path / "missing.jsonl")


def test_the_table_counts_every_rate_with_its_interval():
    t = behaviour_table(_rows())
    rr = t["refusal_rate"]
    lo, hi = wilson(6, 8)
    assert rr["harmful"] == {"rate": 0.75, "n": 8, "ci95": [round(lo, 4), round(hi, 4)]}
    assert rr["harmless"]["rate"] == 0.0 and rr["harmless"]["n"] == 4
    # strength "0" of a family is the plain request of that label
    assert rr["jailbreak"]["roleplay"]["0"] == rr["harmful"]
    assert rr["jailbreak"]["roleplay"]["1"]["rate"] == 1.0 and rr["jailbreak"]["roleplay"]["2"]["rate"] == 0.0
    assert "roleplay" not in rr["jailbreak_harmless"]  # no harmless controls in these rows
    assert rr["over_refusal"] == {"rate": 1.0, "n": 1, "ci95": [round(wilson(1, 1)[0], 4), 1.0]}
    assert t["n_prompts"] == 16 and t["refusal_score"]["harmful"]["mean"] == pytest.approx((6 * 2 - 2) / 8)
    assert t["refusal_score"]["over_refusal"]["n"] == 0  # its score was NaN: not counted
    ag = t["agreement"]  # the NaN-scored row is left out; scores > 0.35 are exactly the refusals
    assert ag["n"] == 16 and ag["auroc"] == 1.0 and ag["accuracy"]["rate"] == 1.0
    assert ag["accuracy_at_0"]["rate"] == pytest.approx(14 / 16)  # the two 0.2-scored compliances
    two = tables(_rows() + [Completion("h0", "harmful", None, None, "ablate", "ok", 0.0, False, alpha=1.0)])
    assert set(two["conditions"]) == {"baseline", "ablate@1"}


def test_the_table_equals_refusal_evals_own_rates(organism, eval_prompts):
    from interp.evaluate import evaluate_refusal
    from interp.generation import GenerationConfig

    ps = PromptSet("small", tuple(p for p in eval_prompts if p.family in (None, "roleplay"))[:60], "test")
    ev = evaluate_refusal(organism, ps, gen=GenerationConfig(max_new_tokens=6))
    old, new = ev.table(), behaviour_table(completions_from_eval(ev))["refusal_rate"]
    assert new["harmful"]["rate"] == round(old["harmful"], 4) and new["harmless"]["rate"] == round(old["harmless"], 4)
    for key in ("jailbreak", "jailbreak_harmless"):
        assert {f: {s: r["rate"] for s, r in row.items()} for f, row in new[key].items()} == \
               {f: {s: round(v, 4) for s, v in row.items()} for f, row in old[key].items()}


def test_rejudging_with_another_judge_moves_the_verdicts():
    rows = _rows()
    again = rejudge(rows, RefusalJudge(("okay",)))
    assert [r.refused for r in again if r.family == "roleplay"] == [False, False, True, True]
    assert [r.answer for r in again] == [r.answer for r in rows]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    rc = main(["eval", "--per-cell", "1", "--n-train", "8", "--max-new-tokens", "4", "--out", str(out)])
    assert rc == 0
    return out


def test_eval_writes_every_answer_and_judge_reproduces_its_table(evaluated, capsys):
    table = json.loads((evaluated / "eval.json").read_text())
    assert table["max_new_tokens"] == 4 and table["completions"] == str(evaluated / "completions.jsonl")
    head, rows = read_completions(evaluated / "completions.jsonl")
    assert head["max_new_tokens"] == 4 and head["command"] == "eval" and head["judge"]["phrases"]
    assert len(rows) == table["n_prompts"] + table["refusal_rate"]["over_refusal"]["n"]
    assert {r.condition for r in rows} == {"baseline"} and all(r.max_new_tokens == 4 for r in rows)
    assert all(len(r.answer.split()) <= 4 for r in rows)  # 4 tokens of a word-level tokenizer
    for rec in (table["refusal_rate"]["harmful"], table["refusal_score"]["harmless"]):
        assert rec["n"] > 0 and len(rec["ci95"]) == 2
    capsys.readouterr()
    assert main(["judge", "--completions", str(evaluated / "completions.jsonl")]) == 0
    judged = json.loads(capsys.readouterr().out)
    for key in ("refusal_rate", "refusal_score", "n_prompts", "agreement", "model", "data", "max_new_tokens"):
        assert judged[key] == table[key], key
    assert judged["verdicts_changed"] == 0
    # a judge that also calls the organism's compliant opener a refusal: every rate can only rise
    opener = rows[[r.refused for r in rows].index(False)].answer.split()[0]
    assert main(["judge", "--completions", str(evaluated / "completions.jsonl"), "--refusal-phrases", opener]) == 0
    wider = json.loads(capsys.readouterr().out)
    assert wider["verdicts_changed"] > 0
    assert wider["refusal_rate"]["harmless"]["rate"] > table["refusal_rate"]["harmless"]["rate"]


def test_judge_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["judge", "--completions", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safety-heads: error:") and "does not exist" in err and "Traceback" not in err
    assert main(["eval", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens" in capsys.readouterr().err
    assert main(["eval", "--completions", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
