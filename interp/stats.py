"""Small statistics shared by the analyses: rank correlations, rates and means with 95% intervals,
differences and the verdicts resting on them, and how well a score agrees with a verdict. A leaf module:
it imports only torch, so any analysis can use it without importing another analysis."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation (average ranks for ties) over the entries both have finite; NaN
    when fewer than 3 entries remain or either side is constant."""
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    keep = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3:
        return float("nan")

    def ranks(x):
        order = x.argsort()
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=x.dtype)
        for v in x.unique():  # ties share their mean rank
            m = x == v
            if m.sum() > 1:
                r[m] = r[m].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / den) if den > 0 else float("nan")


# ------------------------------------------------------------------ rates, means and their intervals
# Every rate the toolkit reports is a record {"rate", "n", "ci95"}; a mean score {"mean", "n",
# "ci95"}; a comparison {"difference", "ci95", ...}. A verdict rests on the interval of the
# difference, never on the two point estimates.
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
N_BOOT = 2000  # bootstrap resamples: the percentile interval's ends move by < 0.01 between seeds at n=32


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (good at 0/n and n/n, where the normal
    approximation gives a zero-width interval)."""
    if n <= 0:
        raise ValueError(f"a rate needs n >= 1, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n], got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_record(flags_or_k, n: int | None = None, digits: int = 4) -> dict:
    """{"rate", "n", "ci95"} from a sequence of booleans, or from a count `k` and `n`. An empty set
    gives {"rate": None, "n": 0, "ci95": None} (not NaN: the record stays valid JSON)."""
    if n is None:
        flags = [bool(f) for f in flags_or_k]
        k, n = sum(flags), len(flags)
    else:
        k = int(flags_or_k)
    if n == 0:
        return {"rate": None, "n": 0, "ci95": None}
    lo, hi = wilson(k, n)
    return {"rate": round(k / n, digits), "n": n, "ci95": [round(lo, digits), round(hi, digits)]}


def _values(x) -> Tensor:
    t = torch.as_tensor([float(v) for v in x] if not isinstance(x, Tensor) else x, dtype=torch.float64).flatten()
    return t[torch.isfinite(t)]


BOOT_CHUNK = 2**22  # resampled entries per block (32 MB of indices): a bootstrap over many prompts stays small


def _boot_blocks(n: int, n_boot: int, seed: int):
    """The resamples' indices [rows, n], in blocks of at most BOOT_CHUNK entries (the same draws
    for a seed whatever the block size, since rows are drawn in order from one generator)."""
    g = torch.Generator().manual_seed(seed)
    rows = max(1, BOOT_CHUNK // max(n, 1))
    for start in range(0, n_boot, rows):
        yield torch.randint(0, n, (min(rows, n_boot - start), n), generator=g)


def _boot_means(v: Tensor, n_boot: int, seed: int) -> Tensor:
    """Mean of each bootstrap resample of `v`: [n_boot]."""
    return torch.cat([v[idx].mean(-1) for idx in _boot_blocks(len(v), n_boot, seed)])


def _percentile(stats: Tensor) -> list[float]:
    q = torch.quantile(stats[torch.isfinite(stats)], torch.tensor([0.025, 0.975], dtype=stats.dtype))
    return [float(q[0]), float(q[1])]


def bootstrap_mean(values, seed: int = 0, n_boot: int = N_BOOT, digits: int = 4) -> dict:
    """{"mean", "n", "ci95"}: the mean of the finite values with a percentile bootstrap over them
    (prompts are the resampled unit). ci95 is None below 2 values."""
    v = _values(values)
    n = len(v)
    if n == 0:
        return {"mean": None, "n": 0, "ci95": None}
    ci = _percentile(_boot_means(v, n_boot, seed)) if n >= 2 else None
    return {"mean": round(float(v.mean()), digits), "n": n, "ci95": [round(c, digits) for c in ci] if ci else None}


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of p1 - p2 for two independent proportions (Newcombe 1998, method 10: the
    hybrid of the two Wilson intervals)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int) -> tuple[float, float]:
    """95% interval of p_a - p_b for two proportions measured on the same n units (Newcombe 1998,
    "Improved confidence intervals for the difference between binomial proportions based on paired
    data", method 10): the two Wilson intervals combined with the phi correlation of the 2x2 table
    (`both`: units with a and b, `only_a`, `only_b`, `neither`). Unlike a bootstrap over a handful of
    prompts it never collapses to a zero-width interval when every pair differs the same way."""
    n = both + only_a + only_b + neither
    if n <= 0:
        raise ValueError("a paired difference needs at least one pair")
    pa, pb = (both + only_a) / n, (both + only_b) / n
    la, ua = wilson(both + only_a, n)
    lb, ub = wilson(both + only_b, n)
    den = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(den) if den > 0 else 0.0
    d = pa - pb
    lo = d - math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    hi = d + math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def difference(a, b, ids_a=None, ids_b=None, kind: str = "rate", seed: int = 0, n_boot: int = N_BOOT,
               digits: int = 4) -> dict:
    """mean(a) - mean(b) with its 95% interval: {"difference", "ci95", "n_a", "n_b", "paired", "method"}.

    Paired by prompt when `ids_a` and `ids_b` name the same prompts (in any order): a bootstrap over
    the prompts of the per-prompt differences. Otherwise unpaired: for rates (`kind="rate"`, values
    0/1) Newcombe's hybrid score interval, for means a bootstrap of each side on its own."""
    if kind not in ("rate", "mean"):
        raise ValueError(f"kind must be 'rate' or 'mean', got {kind!r}")
    va = torch.as_tensor([float(x) for x in a], dtype=torch.float64)
    vb = torch.as_tensor([float(x) for x in b], dtype=torch.float64)
    if len(va) == 0 or len(vb) == 0:
        return {"difference": None, "ci95": None, "n_a": len(va), "n_b": len(vb), "paired": False, "method": None}
    paired = (ids_a is not None and ids_b is not None and len(set(ids_a)) == len(ids_a) == len(va)
              and len(ids_b) == len(vb) and set(ids_a) == set(ids_b))
    if paired:
        pos = {i: j for j, i in enumerate(ids_b)}
        d = va - vb[[pos[i] for i in ids_a]]
        keep = torch.isfinite(d)
        d = d[keep]
        if len(d) == 0:
            return {"difference": None, "ci95": None, "n_a": 0, "n_b": 0, "paired": True, "method": "paired bootstrap"}
        ci = _percentile(_boot_means(d, n_boot, seed)) if len(d) >= 2 else None
        est, n_a, n_b, method = float(d.mean()), len(d), len(d), "paired bootstrap"
    else:
        va, vb = va[torch.isfinite(va)], vb[torch.isfinite(vb)]
        est, n_a, n_b = float(va.mean() - vb.mean()), len(va), len(vb)
        if kind == "rate":
            if not bool(((va == 0) | (va == 1)).all() and ((vb == 0) | (vb == 1)).all()):
                raise ValueError("kind='rate' takes 0/1 values; pass kind='mean' for scores")
            ci, method = list(newcombe(int(va.sum()), n_a, int(vb.sum()), n_b)), "newcombe"
        else:
            ci = (_percentile(_boot_means(va, n_boot, seed) - _boot_means(vb, n_boot, seed + 1))
                  if min(n_a, n_b) >= 2 else None)
            method = "unpaired bootstrap"
    return {"difference": round(est, digits), "ci95": [round(c, digits) for c in ci] if ci else None,
            "n_a": n_a, "n_b": n_b, "paired": paired, "method": method}


def decided(diff: dict) -> int:
    """+1 when the difference's interval lies above 0, -1 below, 0 when it contains 0 (or is missing)."""
    ci = diff.get("ci95")
    if not ci:
        return 0
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


def verdict(diff: dict, a: str, b: str, what: str = "refusal rate") -> str:
    """A sentence for a comparison, resting on the interval of a - b: "too few prompts to call" when
    it contains 0, otherwise which side is higher and by how much."""
    if diff.get("difference") is None:
        return f"too few prompts to call: no {what} to compare for {a} and {b}"
    ci = diff.get("ci95")
    n = f"{diff['n_a']} paired prompts" if diff.get("paired") else f"{diff['n_a']} and {diff['n_b']} prompts"
    span = f"95% CI {ci[0]:+.3g} to {ci[1]:+.3g}, {n}" if ci else f"no interval with {n}"
    side = decided(diff)
    if side == 0:
        return f"too few prompts to call: {what} of {a} minus {b} is {diff['difference']:+.3g} ({span})"
    hi, lo = (a, b) if side > 0 else (b, a)
    return f"{what} of {hi} is higher than {lo} by {abs(diff['difference']):.3g} ({span})"


# ------------------------------------------------------------------ a score against a verdict
def _ranks(x: Tensor) -> Tensor:
    """1-based ranks, ties sharing their mean rank."""
    _, inv, counts = torch.unique(x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    return ((ends - (counts - 1) / 2.0))[inv]


def auroc(scores, positive) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting half
    (Mann-Whitney U / n_pos n_neg); None when either class is empty."""
    s = torch.as_tensor([float(v) for v in scores], dtype=torch.float64)
    y = torch.as_tensor([bool(v) for v in positive])
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    u = float(_ranks(s)[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _boot_aurocs(s: Tensor, y: Tensor, n_boot: int, seed: int) -> Tensor:
    """AUROC of each bootstrap resample, all at once: a resample is a weight per prompt (how often it
    was drawn), and the Mann-Whitney count weighs each (positive, negative) pair by both weights.
    NaN for a resample without both classes."""
    order = s.argsort()
    s, y = s[order], y[order].to(torch.float64)
    _, group = torch.unique_consecutive(s, return_inverse=True)
    n, n_groups = len(s), int(group.max()) + 1
    out = []
    for idx in _boot_blocks(n, n_boot, seed):  # indices drawn into the sorted order: the same uniform resampling
        w = torch.zeros(idx.shape, dtype=torch.float64).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64))
        pos, neg = w * y, w * (1 - y)
        per_group = torch.zeros((len(w), n_groups), dtype=torch.float64).index_add_(1, group, neg)
        below = per_group.cumsum(-1) - per_group  # negatives' weight strictly below each group
        u = (pos * (below[:, group] + 0.5 * per_group[:, group])).sum(-1)
        out.append(u / (pos.sum(-1) * neg.sum(-1)))  # 0/0 -> NaN when a class is missing
    return torch.cat(out)


def agreement(scores, refused, seed: int = 0, n_boot: int = N_BOOT, digits: int = 4) -> dict:
    """How well a one-pass score (> threshold: refuses) stands in for the judged verdict on the same
    answers: AUROC with a bootstrap interval over prompts, the threshold that maximises accuracy
    (ties: the one nearest 0) with that accuracy, and the accuracy at threshold 0."""
    pairs = [(float(s), bool(r)) for s, r in zip(scores, refused) if math.isfinite(float(s))]
    n = len(pairs)
    out: dict = {"n": n, "n_refused": sum(r for _, r in pairs)}
    if n == 0:
        return {**out, "auroc": None, "auroc_ci95": None, "threshold": None, "accuracy": rate_record([]),
                "accuracy_at_0": rate_record([])}
    s = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    y = torch.tensor([p[1] for p in pairs])
    a = auroc(s, y)
    ci = None
    if a is not None and n >= 2:
        boots = _boot_aurocs(s, y, n_boot, seed)
        ci = [round(c, digits) for c in _percentile(boots)] if bool(torch.isfinite(boots).any()) else None
    u = torch.unique(s)  # candidate thresholds: below every score, between neighbours, above every score
    cands = torch.cat([u[:1] - 1, (u[1:] + u[:-1]) / 2, u[-1:] + 1, torch.zeros(1, dtype=u.dtype)])  # 0 wins ties
    correct = ((s[None, :] > cands[:, None]) == y[None, :]).sum(-1)
    best = correct == correct.max()
    t = float(cands[best][cands[best].abs().argmin()])
    return {**out, "auroc": None if a is None else round(a, digits), "auroc_ci95": ci, "threshold": round(t, digits),
            "accuracy": rate_record(int(correct.max()), n), "accuracy_at_0": rate_record(((s > 0) == y).tolist())}
