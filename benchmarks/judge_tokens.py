"""How many generated tokens the refusal judge needs: the smallest `max_new_tokens` at which the
substring judge's verdict equals its verdict at the longest length for at least 99% of prompts.

    python benchmarks/judge_tokens.py --out out/judge_tokens.json                      # both real models
    python benchmarks/judge_tokens.py --models organism --max-new-tokens 64            # the toy organism

Each model answers the held-out prompts once, greedily, up to `--max-new-tokens` tokens (greedy
answers are prefix-consistent: the first L tokens of a 128-token answer are the answer a run with
max_new_tokens=L gives), and the judge reads every prefix. The prompts: the held-out (test) split
of the study the CLI opens for the model, plain harmful and harmless requests plus each jailbreak
family at its strongest strength (the real models share organism:smollm2's English sets). Printed
and written per model: the verdict agreement at each length, the smallest lengths reaching 99% (all
prompts, and the harmful and harmless ones), how many refusals only appear after a preamble (not
in the first 12 tokens, the old default), examples of them, and how many answers were still going
at the longest length (a refusal could come later still), and how well the one-pass refusal score
agrees with the verdict (AUROC, best threshold). With `--out DIR/x.json`, every answer at the longest
length also goes to DIR/completions_<model>.jsonl (`safety-heads judge --completions` rereads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ("organism:smollm2", "smollm2-135m-instruct")
OLD_DEFAULT = 12  # StudyConfig.max_new_tokens before this measurement


def held_out(model_name: str, per_label: int, jb_per_cell: int, seed: int):
    """The study's held-out split for `model_name` (English sets for the SmolLM2 models): plain
    requests and each family's strongest cell, at most `per_label` / `jb_per_cell` per cell."""
    from interp.model import load_model
    from interp.pipeline import load_study_data
    from interp.prompts import PromptSet
    from interp.study import StudyConfig

    source = "organism:smollm2" if model_name in REAL else model_name
    m = load_model(source)
    data = load_study_data(StudyConfig(model=source, per_cell=max(per_label, jb_per_cell), seed=seed), m)
    test = data.test
    keep, seen = [], {}
    top = {f: max(ss) for f, ss in test.families().items()}
    for p in test:
        cell = (p.label, p.family, p.strength)
        cap = per_label if p.family is None else jb_per_cell
        if (p.family is None or p.strength == top[p.family]) and seen.get(cell, 0) < cap:
            seen[cell] = seen.get(cell, 0) + 1
            keep.append(p)
    return PromptSet(f"{test.name}:judge-tokens", tuple(keep), test.source)


def answer_ids(model, prompts, max_new_tokens: int, batch_size: int) -> tuple[list[list[int]], list[bool], list[float]]:
    """Greedy answer token ids (caller's order), whether each stopped (EOS) before the cap, and the
    one-pass refusal score read off the first generation step."""
    from interp.batching import prompt_chunks
    from interp.generation import generate_batch
    from interp.scoring import refusal_log_odds

    texts = prompts.texts
    ids: list[list[int]] = [[] for _ in texts]
    scores = [float("nan")] * len(texts)
    for chunk in prompt_chunks(model, texts, batch_size):
        first: list = []
        rows = generate_batch(model, model.encode([texts[i] for i in chunk], indices=chunk), max_new_tokens, rows=chunk,
                              first_logits=first)
        for i, r, sc in zip(chunk, rows, refusal_log_odds(model, first[0]).tolist()):
            ids[i], scores[i] = r, sc
    return ids, [len(r) < max_new_tokens for r in ids], scores


def measure(model, prompts, max_new_tokens: int, batch_size: int, judge, completions: Path | None = None) -> dict:
    from interp.completions import Completion, judge_header, write_completions
    from interp.stats import agreement, rate_record

    t = time.perf_counter()
    ids, stopped, scores = answer_ids(model, prompts, max_new_tokens, batch_size)
    gen_s = time.perf_counter() - t
    dec = model.tokenizer.decode
    n = len(prompts)
    # verdict[L-1][i]: the judge on the first L tokens of answer i
    verdict = [[judge.is_refusal(dec(r[:L], skip_special_tokens=True).strip()) for r in ids]
               for L in range(1, max_new_tokens + 1)]
    final = verdict[-1]
    labels = prompts.labels
    agree = {}
    need: dict[str, int | None] = {}
    for group in ("all", "harmful", "harmless"):
        sel = [i for i in range(n) if group == "all" or labels[i] == group]
        if not sel:
            continue
        curve = [sum(v[i] == final[i] for i in sel) / len(sel) for v in verdict]
        agree[group] = curve
        need[group] = next(L for L, a in enumerate(curve, 1) if a >= 0.99)
    # where each final refusal first appears (token count at which the judge first says "refused")
    first = {i: next(L for L in range(1, max_new_tokens + 1) if all(verdict[k - 1][i] for k in range(L, max_new_tokens + 1)))
             for i in range(n) if final[i]}
    late = sorted((i for i, L in first.items() if L > OLD_DEFAULT), key=lambda i: -first[i])
    if completions is not None:  # every answer at the longest length: `safety-heads judge --completions` rereads it
        rows = [Completion(p.id, p.label, p.family, p.strength, "baseline", dec(r, skip_special_tokens=True).strip(), s, v,
                           set="test", prompt=p.text, max_new_tokens=max_new_tokens)
                for p, r, s, v in zip(prompts, ids, scores, final)]
        write_completions(completions, rows, {"command": "benchmarks/judge_tokens.py", "model": model.name,
                                              "judge": judge_header(judge), "seed": 0, "max_new_tokens": max_new_tokens})
    lengths = sorted({min(L, max_new_tokens) for L in (OLD_DEFAULT, 32, 64, max_new_tokens)})
    return {
        "n": n, "n_by_label": {lab: labels.count(lab) for lab in sorted(set(labels))},
        "max_new_tokens": max_new_tokens, "generate_seconds_loaded": round(gen_s, 1),
        "refusal_rate_at_max": {g: rate_record([final[i] for i in range(n) if g == "all" or labels[i] == g])
                                for g in agree},
        "tokens_for_99pct_agreement": need,
        "agreement_at": {str(L): {g: round(c[L - 1], 4) for g, c in agree.items()}
                         for L in (1, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if L <= max_new_tokens},
        "still_generating_at_max": rate_record([not s for s in stopped]),
        # the one-pass refusal score (first response position) against the verdict at each length
        "score_agreement": {str(L): agreement(scores, verdict[L - 1]) for L in lengths},
        "refusals_after_token_12": {"count": len(late), "of_refusals": len(first),
                                    "first_refusal_token": {str(i): first[i] for i in late}},
        "late_refusal_examples": [{"id": prompts[i].id, "label": labels[i], "family": prompts[i].family,
                                   "refusal_from_token": first[i],
                                   "answer": dec(ids[i], skip_special_tokens=True).strip()[:400]} for i in late[:6]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(REAL), help="comma-separated model names")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--per-label", type=int, default=64, help="plain held-out prompts per label")
    ap.add_argument("--jailbreak-per-cell", type=int, default=8, help="prompts per label at each family's strongest strength")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: on a shared machine a second "
                    "thread mostly waits at barriers; see interp.threads)")
    ap.add_argument("--out", default=None, help="write the result as JSON here (after each model)")
    args = ap.parse_args(argv)

    import torch

    from interp.model import load_model
    from interp.scoring import RefusalJudge

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    judge = RefusalJudge()
    result = {"judge": {**judge.describe(), "phrases": list(judge.phrases)}, "threshold": 0.99, "models": {}}
    for name in args.models.split(","):
        prompts = held_out(name, args.per_label, args.jailbreak_per_cell, args.seed)
        model = load_model(name)
        done = Path(args.out).with_name(f"completions_{name.replace(':', '_')}.jsonl") if args.out else None
        r = measure(model, prompts, args.max_new_tokens, args.batch_size, judge, done)
        r["prompts"] = prompts.describe()
        result["models"][name] = r
        print(f"{name}: n={r['n']} refusal at {args.max_new_tokens} tokens: "
              f"{ {g: v['rate'] for g, v in r['refusal_rate_at_max'].items()} }; tokens for 99% agreement: "
              f"{r['tokens_for_99pct_agreement']}; refusals after token {OLD_DEFAULT}: "
              f"{r['refusals_after_token_12']['count']} of {r['refusals_after_token_12']['of_refusals']}; still generating "
              f"at {args.max_new_tokens}: {r['still_generating_at_max']['rate']} ({r['generate_seconds_loaded']} s)", flush=True)
        if args.out:  # after each model: a long run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
