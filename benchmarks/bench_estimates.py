"""How well attribution patching ranks candidates against exact measurement, and whether the fast
searches choose what the exhaustive ones choose.

    python benchmarks/bench_estimates.py [--models organism,smollm2] [--parts heads,patching,search,directions] [--n 16]
                                         [--n-directions N]

For each model:
* heads: the estimated single-head ablation effect (one forward + backward pass) against the exact
  one (one replica per head), for both directions and both reference means (balanced, opposite):
  Spearman over all heads, and how many of the exact top 4 fall in the estimate's top 8;
* patching: every head's and residual cell's estimated patching effect against exact patching
  (both directions), Spearman over all of them;
* search: the greedy head search, fast (top 8) and exhaustive: heads, direction, judged effect;
* directions: refusal-direction selection, fast and exhaustive: the chosen candidate, and where
  they differ, by how much the exhaustive choice's harmful refusal score under ablation beats the
  fast one's; Spearman of the estimated ablation / addition scores against the exact ones.

The organism uses its own plain prompts; SmolLM2-135M-Instruct (when installed) the English
requests of `benchmarks/scale_prompts.py` with category labels and the organism-topic pairs of
`make_pairs` for patching.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _prompts(name: str, n_per_label: int):
    from interp.prompts import Prompt, PromptSet

    if name == "organism":
        from organisms.data import plain_prompts

        return plain_prompts(seed=0, n_per_label=n_per_label)
    from scale_prompts import HARMFUL, HARMLESS

    rows = [Prompt(t, "harmful", id=f"harmful-{i}") for i, t in enumerate(HARMFUL[:n_per_label])]
    rows += [Prompt(t, "harmless", id=f"harmless-{i}") for i, t in enumerate(HARMLESS[:n_per_label])]
    return PromptSet(f"{name}-bench", tuple(rows), "benchmarks")


def heads_part(model, ps, n: int) -> dict:
    from interp.causal.ablate import HeadReference
    from interp.causal.runner import ablation_scores
    from interp.causal.search import FLIPS, _estimate
    from interp.causal.attribution import head_gradients
    from interp.causal.compare import spearman
    from interp.causal.heads import all_heads

    h, l = ps.filter(label="harmful")[:n], ps.filter(label="harmless")[:n]
    both = h.concat(l)
    t = time.perf_counter()
    g = head_gradients(model, both)
    t_est = time.perf_counter() - t
    refs = {"balanced": {d: HeadReference(g.z_last, "last") for d in FLIPS},
            "opposite": {"refusal": HeadReference(g.z_last[n:], "last"), "compliance": HeadReference(g.z_last[:n], "last")}}
    out, t_exact = {}, 0.0
    for policy, rr in refs.items():
        for d, (label, sign) in FLIPS.items():
            prompts, rows = (h, range(n)) if label == "harmful" else (l, range(n, 2 * n))
            est = _estimate(model, g.rows(rows), d, "mean", rr[d])
            t = time.perf_counter()
            s = ablation_scores(model, prompts, [[]] + [[x] for x in all_heads(model)], "mean", rr[d])
            t_exact += time.perf_counter() - t
            exact = (sign * (s[1:] - s[:1]).mean(1)).view(model.n_layers, model.n_heads)
            top8 = set(est.flatten().argsort(descending=True)[:8].tolist())
            top4 = exact.flatten().argsort(descending=True)[:4].tolist()
            out[f"{policy}/{d}"] = {"spearman": round(spearman(est, exact), 3),
                                    "spearman_abs": round(spearman(est.abs(), exact.abs()), 3),
                                    "exact_top4_in_estimate_top8": sum(i in top8 for i in top4),
                                    "exact_best": list(divmod(top4[0], model.n_heads)),
                                    "exact_best_rank_in_estimate": int((est.flatten() > est.flatten()[top4[0]]).sum()) + 1}
    out["seconds"] = {"estimate (one fwd+bwd, both sets)": round(t_est, 1), "exact scans (4)": round(t_exact, 1)}
    return out


def patching_part(model, n: int) -> dict:
    from interp.causal.patching import activation_patching
    from organisms.provider import make_pairs

    pairs = make_pairs(model, n, seed=0)
    t = time.perf_counter()
    fast = activation_patching(model, *pairs)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    ex = activation_patching(model, *pairs, exhaustive=True)
    t_ex = time.perf_counter() - t
    top = lambda p, k: set(p.head_effect.abs().flatten().argsort(descending=True)[:k].tolist())  # noqa: E731
    return {"spearman": ex.estimate_quality(), "top4_heads_agree": len(top(fast, 4) & top(ex, 4)),
            "seconds": {"fast": round(t_fast, 1), "exhaustive": round(t_ex, 1)}}


def search_part(model, ps, n: int) -> dict:
    from interp.causal.search import SearchConfig, search_heads

    h, l = ps.filter(label="harmful")[:n], ps.filter(label="harmless")[:n]
    out = {}
    for ex in (False, True):
        t = time.perf_counter()
        s = search_heads(model, h, l, SearchConfig(max_heads=4, exhaustive=ex))
        out["exhaustive" if ex else "fast"] = {"direction": s.best.flip, "heads": [list(x) for x in s.best.heads],
                                               "reference": s.cfg.reference, "success": s.best.success,
                                               "effect": round(s.best.effect, 3), "seconds": round(time.perf_counter() - t, 1),
                                               "estimate": s.estimate_quality()}
    f, e = out["fast"], out["exhaustive"]
    out["same_choice"] = (f["direction"], f["heads"], f["reference"]) == (e["direction"], e["heads"], e["reference"])
    return out


def directions_part(model, ps) -> dict:
    from interp.prompts import PromptSet
    from probes.directions import SelectionConfig, find_refusal_direction
    from probes.run import split_indices

    tr, va = split_indices(ps, 0.25, seed=0)
    train = PromptSet(f"{ps.name}:train", tuple(ps[i] for i in tr))
    val = PromptSet(f"{ps.name}:val", tuple(ps[i] for i in va))
    out = {}
    for ex in (False, True):
        t = time.perf_counter()
        d = find_refusal_direction(model, train, val, labels="category", cfg=SelectionConfig(exhaustive=ex))
        out["exhaustive" if ex else "fast"] = {"site": d.site, "layer": d.layer, "position": d.position,
                                               "ablation_score": d.scores["ablation_score"], "passed": d.scores["passed"],
                                               "seconds": round(time.perf_counter() - t, 1), "estimate": d.meta["estimate"]}
    f, e = out["fast"], out["exhaustive"]
    out["same_choice"] = (f["site"], f["layer"], f["position"]) == (e["site"], e["layer"], e["position"])
    if not out["same_choice"]:
        out["exhaustive_beats_fast_by"] = round(f["ablation_score"] - e["ablation_score"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="organism,smollm2")
    ap.add_argument("--parts", default="heads,patching,search,directions")
    ap.add_argument("--n", type=int, default=16, help="prompts per label for heads/search, pairs for patching")
    ap.add_argument("--n-directions", type=int, default=None,
                    help="prompts per label for the direction part (default: 32 on the organism, 48 on SmolLM2)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from interp.model import load_model
    from interp.threads import model_threads

    print(f"uptime: {os.getloadavg()}  torch threads {torch.get_num_threads()}", flush=True)
    results = {}
    for name in args.models.split(","):
        model = load_model("smollm2-135m-instruct" if name == "smollm2" else name)
        ps = _prompts(name, args.n_directions or (32 if name == "organism" else 48))
        res = {}
        with model_threads(model):
            for part in args.parts.split(","):
                t = time.perf_counter()
                res[part] = {"heads": lambda: heads_part(model, ps, args.n), "patching": lambda: patching_part(model, args.n),
                             "search": lambda: search_part(model, ps, args.n), "directions": lambda: directions_part(model, ps)}[part]()
                print(f"[{name}] {part} ({time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f}): "
                      f"{json.dumps(res[part])}", flush=True)
        results[name] = res
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
