"""The one direction type: a residual-stream direction with the table it was chosen from, saved as
safetensors + JSON (`interp.artifacts`). `probes.find_refusal_direction` makes one; interventions
(`interp.intervention`) ablate or add it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from interp.artifacts import check_artifact_model, read_artifact, write_artifact
from interp.errors import ArtifactError, InputError


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
        return write_artifact(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model=None, allow_other_model: bool = False) -> "Direction":
        """Load a saved direction; with `model`, refuse one made on another model (fingerprint)
        unless `allow_other_model=True` (recorded in `meta["allow_other_model"]`). Steering with
        it checks the fingerprint again, so a direction loaded without `model` is checked there."""
        tensors, meta = read_artifact(path, "Direction")
        check_artifact_model(meta, model, "direction", ("n_layers", "d_model"), allow_other_model)
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
