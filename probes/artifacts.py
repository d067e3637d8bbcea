"""Saved results of probing: a `HeadRanking` (every head, every score) and a `Direction` (one
residual-stream direction and the table it was chosen from).

Each saves as `NAME.safetensors` (tensors) + `NAME.json` (metadata: model, prompt sets, labels,
site/hook, positions, seed, toolkit version); never pickle. Loading with a model checks that the
artifact was made for it (name and shapes) and raises `ArtifactError` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import ArtifactError, InputError

# scores a ranking can be sorted by (all: higher is better)
RANK_BY = ("accuracy", "auroc", "mm_accuracy", "mm_auroc", "cohens_d")


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".safetensors"), p.parent / (p.name + ".json")


def _write(path: str | Path, tensors: dict[str, Tensor], meta: dict) -> list[Path]:
    from safetensors.torch import save_file

    st, js = _paths(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(st))
    js.write_text(json.dumps(meta, indent=1, default=_json_default))
    return [st, js]


def _read(path: str | Path, kind: str) -> tuple[dict[str, Tensor], dict]:
    from safetensors.torch import load_file

    st, js = _paths(path)
    for f in (st, js):
        if not f.exists():
            raise ArtifactError(f"no {kind} artifact at {path}: {f} is missing (an artifact is a .safetensors file "
                                f"and a .json sidecar with the same name)")
    try:
        meta = json.loads(js.read_text())
        tensors = load_file(str(st))
    except Exception as e:  # corrupt or truncated files
        raise ArtifactError(f"could not read the {kind} artifact at {st} ({type(e).__name__}: {e})") from None
    if meta.get("type") != kind:
        raise ArtifactError(f"{js} holds a {meta.get('type', 'unknown')!r} artifact, not a {kind}; "
                            f"load it with the matching class")
    return tensors, meta


def _json_default(o):
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.dtype):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_model(meta: dict, model, what: str, fields: tuple[str, ...], allow_other_model: bool = False) -> None:
    """Raise `ArtifactError` unless `model` is the model the artifact was made for: the same model
    fingerprint (config + weights, whatever path or name it was loaded by) and the same shapes.
    `allow_other_model=True` lets a fingerprint mismatch through (never a shape mismatch) and
    records it in `meta["allow_other_model"]`."""
    from interp.fingerprint import check_made_on

    if model is None:  # nothing to compare with now; every later use with a model checks the fingerprint
        return
    made, now = meta.get("model_shape", {}), {f: int(getattr(model, f)) for f in fields}
    diff = [f"{f} {made[f]} vs {now[f]}" for f in fields if f in made and made[f] != now[f]]
    if diff:
        raise ArtifactError(f"this {what} does not fit the model: it was made on {meta.get('model')!r}, not "
                            f"{model.name!r}; shapes differ (artifact vs model): " + ", ".join(diff)
                            + f". Recompute it on {model.name!r} (safety-heads rank --model ...) or load it with the right model")
    override = check_made_on(model, meta, f"this {what}", allow_other_model, require_fingerprint=True)
    if override:
        meta["allow_other_model"] = override


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
        return _write(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model=None, allow_other_model: bool = False) -> "HeadRanking":
        """Load a saved ranking; with `model`, refuse one made on another model (fingerprint) unless
        `allow_other_model=True` (recorded in `meta["allow_other_model"]`)."""
        tensors, meta = _read(path, "HeadRanking")
        check_model(meta, model, "head ranking", ("n_layers", "n_heads", "d_head"), allow_other_model)
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


@dataclass
class Direction:
    """A residual-stream direction: the difference in means at `site` (block input, `resid_pre`) of
    `layer`, at prompt `position` (counted from the end, -1 = last token), at its natural size
    (`unit` for the normalised vector). `scores` holds the chosen candidate's numbers, `candidates`
    the whole table (one row per layer and position, with the filter results), `reason` why it won.
    `mean_diffs` keeps every candidate vector [position, layer, d_model] (`positions` name its rows).
    """

    vector: Float[Tensor, "d_model"]
    layer: int
    position: int
    site: str = "resid_pre"
    scores: dict = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    reason: str = ""
    meta: dict = field(default_factory=dict)
    mean_diffs: Float[Tensor, "pos layer d_model"] | None = None
    positions: list[int] = field(default_factory=list)

    @property
    def unit(self) -> Float[Tensor, "d_model"]:
        return self.vector / self.vector.norm().clamp(min=1e-12)

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    @property
    def hook_name(self) -> str:
        from interp.hooknames import act_name

        return act_name(self.site, self.layer)

    def candidate(self, layer: int, position: int | None = None) -> Float[Tensor, "d_model"]:
        """The difference in means of another layer (at this direction's position by default)."""
        if self.mean_diffs is None:
            raise InputError("this direction was saved without its candidate vectors")
        pos = self.position if position is None else position
        if pos not in self.positions or not 0 <= layer < self.mean_diffs.shape[1]:
            raise InputError(f"no candidate at layer {layer}, position {pos}; layers 0..{self.mean_diffs.shape[1] - 1}, "
                             f"positions {self.positions}")
        return self.mean_diffs[self.positions.index(pos), layer]

    def save(self, path: str | Path) -> list[Path]:
        tensors = {"vector": self.vector}
        if self.mean_diffs is not None:
            tensors["mean_diffs"] = self.mean_diffs
        meta = dict(self.meta, type="Direction", layer=self.layer, position=self.position, site=self.site,
                    hook=self.hook_name, scores=self.scores, candidates=self.candidates, reason=self.reason,
                    positions=self.positions)
        return _write(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model=None, allow_other_model: bool = False) -> "Direction":
        """Load a saved direction; with `model`, refuse one made on another model (fingerprint)
        unless `allow_other_model=True` (recorded in `meta["allow_other_model"]`). Steering with
        it checks the fingerprint again, so a direction loaded without `model` is checked there."""
        tensors, meta = _read(path, "Direction")
        check_model(meta, model, "direction", ("n_layers", "d_model"), allow_other_model)
        vec = tensors.get("vector")
        if vec is None or vec.ndim != 1:
            raise ArtifactError(f"{path} has no 1-d 'vector' tensor")
        if model is not None and vec.shape[0] != model.d_model:
            raise ArtifactError(f"{path}: the vector has {vec.shape[0]} dimensions, {model.name} a residual width of {model.d_model}")
        keys = ("type", "layer", "position", "site", "hook", "scores", "candidates", "reason", "positions")
        rest = {k: v for k, v in meta.items() if k not in keys}
        return cls(vec, int(meta["layer"]), int(meta["position"]), meta.get("site", "resid_pre"), meta.get("scores", {}),
                   meta.get("candidates", []), meta.get("reason", ""), rest, tensors.get("mean_diffs"),
                   list(meta.get("positions", [])))
