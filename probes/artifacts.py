"""Saved results of probing: a `HeadRanking` (every head, every score). The direction the probes
choose is the core's `interp.direction.Direction`.

It saves as `NAME.safetensors` (tensors) + `NAME.json` (metadata: model, prompt sets, labels,
site/hook, positions, seed, toolkit version) through `interp.artifacts`; never pickle. Loading with
a model checks that the ranking was made for it (fingerprint and shapes) and raises `ArtifactError` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.artifacts import check_artifact_model, read_artifact, write_artifact
from interp.errors import ArtifactError, InputError

# scores a ranking can be sorted by (all: higher is better)
RANK_BY = ("accuracy", "auroc", "mm_accuracy", "mm_auroc", "cohens_d")


@dataclass
class HeadRanking:
    """Scores of every attention head (hook_z) for separating the two classes.

    `scores[name]` is [position, layer, head] (positions: the captured prompt positions, counted from
    the end, -1 = last token). Indexing `ranking[name]` gives the [n_layers, n_heads] tensor, taken at
    each head's best position by the sorting criterion `by` (with one position: that position).
    Scores: accuracy / auroc (+ _std): L2 logistic probe, k-fold held-out; mm_accuracy / mm_auroc /
    cohens_d (+ _std): mass-mean direction, threshold fit on the training folds, held-out.
    `vectors`: "probe" (logistic weight in activation space) and "mass_mean" (difference in means),
    both fitted on every prompt, [position, layer, head, d_head]; `scores["sigma"]` is the std of the
    prompts' projections on the unit mass-mean direction (ITI's shift scale).
    """

    scores: dict[str, Float[Tensor, "pos layer head"]]
    vectors: dict[str, Float[Tensor, "pos layer head d_head"]]
    layers: list[int]
    positions: list[int]
    by: str = "accuracy"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_by(self.by)

    # ------------------------------------------------------------ shapes
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(next(iter(self.scores.values())).shape[-1])

    @property
    def best_position(self) -> Int[Tensor, "layer head"]:
        """Index into `positions` where each head scores best by `by`."""
        return self.scores[self.by].nan_to_num(-float("inf")).argmax(0)

    def __getitem__(self, name: str) -> Float[Tensor, "layer head"]:
        if name not in self.scores:
            raise InputError(f"no score {name!r} in this ranking; scores: {sorted(self.scores)}")
        return self.scores[name].gather(0, self.best_position[None]).squeeze(0)

    def sort(self, by: str) -> "HeadRanking":
        """The same ranking, ordered by another score."""
        return replace(self, by=_check_by(by))

    def at(self, position: int) -> "HeadRanking":
        """The ranking at one captured position (an entry of `positions`, e.g. -1)."""
        if position not in self.positions:
            raise InputError(f"position {position} was not probed; probed positions: {self.positions}")
        i = self.positions.index(position)
        return replace(self, scores={k: v[i:i + 1] for k, v in self.scores.items()},
                       vectors={k: v[i:i + 1] for k, v in self.vectors.items()}, positions=[position])

    # ------------------------------------------------------------ views
    def order(self, by: str | None = None) -> list[tuple[int, int]]:
        """(layer index, head) of every head, best first; ties (many heads at accuracy 1.0) are
        broken by the other scores in `RANK_BY` order, then layer-major."""
        view = self.sort(by or self.by)  # scores at each head's best position by this criterion
        keys = [view.by] + [k for k in RANK_BY if k != view.by and k in self.scores]
        idx = torch.arange(self.n_layers * self.n_heads)
        for key in reversed(keys):  # stable sorts, least significant key first
            s = view[key].nan_to_num(-float("inf")).flatten()[idx]
            idx = idx[torch.sort(s, descending=True, stable=True).indices]
        return [(int(i) // self.n_heads, int(i) % self.n_heads) for i in idx]

    def top(self, k: int, by: str | None = None) -> list[tuple[int, int]]:
        """The k best heads as (layer, head)."""
        if not isinstance(k, int) or k < 0:
            raise InputError(f"k must be a non-negative integer, got {k!r}")
        return [(self.layers[li], h) for li, h in self.order(by)[:k]]

    def to_rows(self, by: str | None = None) -> list[dict]:
        """One dict per head, best first: layer, head, position and every score."""
        view = self.sort(by or self.by)
        cols = {name: view[name] for name in self.scores}
        best = view.best_position
        rows = []
        for rank, (li, h) in enumerate(view.order(), 1):
            row = {"rank": rank, "layer": self.layers[li], "head": h, "position": self.positions[int(best[li, h])]}
            row.update({name: round(float(t[li, h]), 6) for name, t in cols.items()})
            row["separation"] = row.get("cohens_d")
            rows.append(row)
        return rows

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> list[Path]:
        tensors = {f"score.{k}": v for k, v in self.scores.items()}
        tensors.update({f"vector.{k}": v for k, v in self.vectors.items()})
        meta = dict(self.meta, type="HeadRanking", layers=self.layers, positions=self.positions, by=self.by)
        return write_artifact(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model=None, allow_other_model: bool = False) -> "HeadRanking":
        """Load a saved ranking; with `model`, refuse one made on another model (fingerprint) unless
        `allow_other_model=True` (recorded in `meta["allow_other_model"]`)."""
        tensors, meta = read_artifact(path, "HeadRanking")
        check_artifact_model(meta, model, "head ranking", ("n_layers", "n_heads", "d_head"), allow_other_model)
        scores = {k[6:]: v for k, v in tensors.items() if k.startswith("score.")}
        vectors = {k[7:]: v for k, v in tensors.items() if k.startswith("vector.")}
        shape = (len(meta["positions"]), len(meta["layers"]))
        bad = [k for k, v in {**scores, **vectors}.items() if tuple(v.shape[:2]) != shape]
        if not scores or bad:
            raise ArtifactError(f"{path}: tensors {bad or 'score.*'} do not match the sidecar's positions x layers {shape}")
        if model is not None and max(meta["layers"]) >= model.n_layers:
            raise ArtifactError(f"{path} scores layer {max(meta['layers'])}, which {model.name} does not have")
        rest = {k: v for k, v in meta.items() if k not in ("type", "layers", "positions", "by")}
        return cls(scores, vectors, list(meta["layers"]), list(meta["positions"]), meta.get("by", "accuracy"), rest)


def _check_by(by: str) -> str:
    if by not in RANK_BY:
        raise InputError(f"cannot rank heads by {by!r}; choose one of {RANK_BY}")
    return by
