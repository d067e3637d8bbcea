"""Small statistics shared by the analyses (rank correlations between per-head maps). A leaf module:
it imports only torch, so any analysis can use it without importing another analysis."""

from __future__ import annotations

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
