"""Planted-truth benchmark for `causal`: does it recommend the heads that carry refusal?

Each recipe under benchmarks/planted/ plants refusal in known heads of a base chat model
(SmolLM2-135M-Instruct by default) by training only those heads' query rows and output columns on
the English refusal data (benchmarks/planted_train.py), or, for the control, in one residual
direction written by an MLP. The weight change is cached under ~/.cache/safety-heads/planted/
(no weights are shipped). Then `causal` runs on each variant with the same English files, and the
table says: the planted truth, the recommended heads, precision and recall, the time, and the
refusal of the held-out harmful prompts before and after zero-ablating the planted heads (and
random heads of the same number), with 95% intervals.

    python benchmarks/planted.py                         # every recipe (long: the lead's run)
    python benchmarks/planted.py --recipes mid2,direction --out out/planted
    python benchmarks/planted.py --recipes tiny          # a 2-layer random model, seconds (the test's variant)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted_train import apply, plant, recipe_hash  # noqa: E402

RECIPES = Path(__file__).resolve().parent / "planted"
ENGLISH = ROOT / "data" / "prompts" / "english"
ORDER = ("early1", "mid1", "mid2", "late2", "spread3", "direction")


def load_recipe(name: str) -> dict:
    path = RECIPES / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"no recipe {name!r}; known: {sorted(p.stem for p in RECIPES.glob('*.json'))}")
    return json.loads(path.read_text())


def cache_dir() -> Path:
    from interp.hub import cache_root

    return cache_root() / "planted"


def open_base(recipe: dict, max_new_tokens: int, seed: int = 0):
    """The study the recipe plants into and `causal` runs on: the base model and its prompts."""
    from interp.generation import GenerationConfig
    from interp.study import Study, StudyData

    if recipe.get("base") == "random":  # the fast variant: a 2-layer random model, the organism's prompts
        from organisms.data import eval_prompts, plain_prompts
        from organisms.random import random_model

        model = random_model(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, seed=seed)
        with torch.no_grad():  # a random unembedding is too small for confident answers: scale it
            model.bridge.original_model.lm_head.weight.mul_(float(recipe.get("logit_scale", 1.0)))
        data = StudyData(plain_prompts(seed=seed, n_per_label=48), plain_prompts(seed=seed, n_per_label=48)[:0],
                         eval_prompts(seed=99, per_cell=10), provider="organism")
        return Study(model, data, gen=GenerationConfig(max_new_tokens=max_new_tokens, batch_size=64), seed=seed)
    from interp.pipeline import open_study
    from interp.study import StudyConfig

    cfg = StudyConfig(model="smollm2-135m-instruct", harmful=str(ENGLISH / "harmful.csv"),
                      harmless=str(ENGLISH / "harmless.csv"), families=(), seed=seed, fractions=(0.5, 0.05, 0.45),
                      max_new_tokens=max_new_tokens, per_cell=64)
    return open_study(cfg)


def build(study, recipe: dict, progress: bool = True) -> tuple[dict, dict]:
    """The recipe's weight change (trained once, then read from the cache), applied to the model."""
    from safetensors.torch import load_file, save_file

    key = recipe_hash(recipe, study.model.name)
    path = cache_dir() / f"{recipe['name']}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        deltas = load_file(str(path))
        apply(study.model, deltas)
        return deltas, json.loads(meta_path.read_text())
    harmful = [p.text for p in study.data.plain("train", "harmful")]
    harmless = [p.text for p in study.data.plain("train", "harmless")]
    deltas, log = plant(study.model, recipe, harmful, harmless, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in deltas.items()}, str(path))
    meta = {"recipe": recipe, "base": study.model.name, "train": log}
    meta_path.write_text(json.dumps(meta, indent=1))
    return deltas, meta


def refusal_under_ablation(study, truth: list, n_random: int = 5, seed: int = 0) -> dict:
    """Held-out harmful and harmless refusal, clean and with the planted heads (and random heads of
    the same number) zero-ablated, as rate records."""
    from interp.causal.heads import all_heads
    from interp.causal.runner import ablation_refusals
    from interp.stats import rate_record

    h = study.data.test.filter(label="harmful", family=None)
    l = study.data.test.filter(label="harmless", family=None)
    rng = random.Random(seed)
    others = [x for x in all_heads(study.model) if x not in truth]
    k = max(len(truth), 1)
    randoms = [rng.sample(others, k) for _ in range(n_random)]
    sets = [[]] + ([truth] if truth else []) + randoms
    r, _ = ablation_refusals(study.model, h.concat(l), sets, "zero", judge=study.judge,
                             max_new_tokens=study.gen.max_new_tokens)
    n = len(h)
    out = {"harmful_before": rate_record(r[0, :n].tolist()), "harmless_before": rate_record(r[0, n:].tolist())}
    if truth:
        out["harmful_planted_ablated"] = rate_record(r[1, :n].tolist())
        out["harmless_planted_ablated"] = rate_record(r[1, n:].tolist())
    rr = r[-n_random:, :n].flatten().tolist()
    out["harmful_random_ablated"] = rate_record(rr)
    return out


def score(recommended: list, truth: list) -> dict:
    rec, tru = {tuple(h) for h in recommended}, {tuple(h) for h in truth}
    hit = len(rec & tru)
    return {"precision": hit / len(rec) if rec else None, "recall": hit / len(tru) if tru else None}


def run_variant(name: str, max_new_tokens: int, methods: str, n_search: int, progress: bool = True) -> dict:
    from interp.stages.causal import CausalConfig, causal_stage
    from interp.threads import model_threads

    recipe = load_recipe(name)
    study = open_base(recipe, max_new_tokens)
    t0 = time.perf_counter()
    deltas, meta = build(study, recipe, progress)
    t_build = time.perf_counter() - t0
    truth = [tuple(h) for h in recipe.get("heads", [])]
    with model_threads(study.model):
        rates = refusal_under_ablation(study, truth)
        t1 = time.perf_counter()
        res = causal_stage(study, None, CausalConfig(k=4, n_search=n_search, n_search_min=min(n_search, 32),
                                                     methods=methods))
        t_causal = time.perf_counter() - t1
    rec = res.recommendation
    rep = res.report
    agree = [tuple(h) for h in rep["methods"]["heads"]]
    row = {"variant": name, "kind": recipe["kind"], "truth": [list(h) for h in truth],
           "recommended": [list(h) for h in rec.heads], "confident": rec.confident, "label": rec.to_dict()["label"],
           "candidates": [list(h) for h in rec.candidates], "flip": rec.flip,
           "found_by_several_methods": [list(h) for h in agree],
           **{f"{k}": v for k, v in score(rec.heads, truth).items()},
           **{f"candidates_{k}": v for k, v in score(rec.candidates, truth).items()},
           "specificity": rec.specificity.get("verdict") if rec.specificity else None,
           "methods_verdict": rep["methods"]["verdict"], "reasons": rec.reasons,
           "chosen": rep["recommendation"].get("chosen"),
           # where each method ranks the planted heads (1 = strongest): which evidence would find them
           "truth_ranks": {f"{l},{h}": {k: v for k, v in row.items() if k.endswith("_rank")}
                           for row in rep["table"] for l, h in truth if (row["layer"], row["head"]) == (l, h)},
           "skipped_disruptive": {m: r["skipped_disruptive"] for m, r in rep["methods"]["recommendations"].items()},
           "per_method": {m: {k: r[k] for k in ("candidates", "heads", "confident", "label", "direction")}
                          for m, r in rep["methods"]["recommendations"].items()},
           "consensus": rep["methods"]["table"],
           "converged": rep["methods"].get("converged"),
           "refusal": rates, "seconds_causal": round(t_causal, 1), "seconds_build": round(t_build, 1),
           "train_loss_last": meta["train"]["loss"][-1] if meta.get("train") else None,
           "timings": rep["timings"]}
    return row


def _fmt_rate(r: dict | None) -> str:
    if not r or r.get("rate") is None:
        return "-"
    return f"{r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] n={r['n']}"


def table(rows: list[dict]) -> str:
    head = ("| variant | truth | recommended (confident) | candidates | converged | several methods | precision | recall | "
            "causal s | harmful refusal before | after zeroing planted | after zeroing random |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        f = r["refusal"]
        p = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        rc = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        lines.append(f"| {r['variant']} | {r['truth'] or 'direction'} | {r['recommended'] or '-'} ({r['label']}) | "
                     f"{r['candidates']} | {(r.get('converged') or {}).get('heads') or '-'} | "
                     f"{r['found_by_several_methods'] or '-'} | {p} | {rc} | {r['seconds_causal']} | "
                     f"{_fmt_rate(f['harmful_before'])} | {_fmt_rate(f.get('harmful_planted_ablated'))} | "
                     f"{_fmt_rate(f['harmful_random_ablated'])} |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> str:
    """The issue's bar: every head variant has recall >= 0.5, at least 4 of 5 (4/5 of them) have no
    recommended head outside the truth, and no control variant has a confident head."""
    heads_rows = [r for r in rows if r["truth"]]
    recall = [r for r in heads_rows if (r["recall"] or 0) >= 0.5]
    clean = [r for r in heads_rows if r["recommended"] and (r["precision"] or 0) == 1.0]
    controls = [r for r in rows if not r["truth"]]
    loud = [r["variant"] for r in controls if r["confident"] and r["recommended"]]
    need = -(-4 * len(heads_rows) // 5)
    met = bool(heads_rows) and len(recall) == len(heads_rows) and len(clean) >= need and not loud
    return "\n".join([
        f"head variants with recall >= 0.5: {len(recall)} of {len(heads_rows)}"
        + (f" (not: {[r['variant'] for r in heads_rows if r not in recall]})" if len(recall) < len(heads_rows) else ""),
        f"head variants with no recommended head outside the truth: {len(clean)} of {len(heads_rows)} (needed: {need})",
        f"controls with a confident head: {loud or 'none'} of {[r['variant'] for r in controls] or 'none run'}",
        f"bar {'met' if met else 'not met'}" + ("" if len(heads_rows) >= 5 and controls else
                                               " (fewer than 5 head variants and a control were run)")])


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(ORDER), help="comma-separated recipe names (benchmarks/planted/*.json)")
    ap.add_argument("--max-new-tokens", type=int, default=24, help="answer length the judge reads")
    ap.add_argument("--methods", default="mean,zero,resample", help="ablation methods compared side by side")
    ap.add_argument("--n-search", type=int, default=32, help="search prompts per label")
    ap.add_argument("--out", default=None, help="write planted.json here")
    ap.add_argument("--from-json", default=None,
                    help="comma-separated planted.json files of earlier runs: print their table and the bar, run nothing")
    args = ap.parse_args(argv)
    if args.from_json:  # variants run in separate processes (in parallel) are read together
        rows = [r for f in args.from_json.split(",") if f.strip() for r in json.loads(Path(f.strip()).read_text())]
        print(table(rows) + "\n\n" + verdict(rows))
        return rows
    torch.set_num_threads(1)
    rows = []
    out = Path(args.out) if args.out else None
    for name in [x.strip() for x in args.recipes.split(",") if x.strip()]:
        print(f"[{name}]", flush=True)
        rows.append(run_variant(name, args.max_new_tokens, args.methods, args.n_search))
        print(table(rows[-1:]), flush=True)
        if out:  # after each variant: a long run stopped part-way keeps what it finished
            out.mkdir(parents=True, exist_ok=True)
            (out / "planted.json").write_text(json.dumps(rows, indent=1, default=str))
    print("\n" + table(rows))
    print("\n" + verdict(rows))
    return rows


if __name__ == "__main__":
    main()
