"""Captured activations (`Activations`: one tensor per site, plus metadata) and reading them back
from disk: a `.safetensors` + `.json` pair (`Activations.save`), or a directory of shards written by
`interp.capture.shards.capture_to_disk`, whose format (manifest, shard names, the checks a shard
must pass) is defined here because loading checks it too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture.sites import Site
from interp.errors import ArtifactError, InputError
from interp.model import ChatModel


@dataclass
class Activations:
    """Captured activations. `acts[site]` is [batch, pos, d_head] for one head, [batch, pos, head,
    d_head] for a layer's heads, [batch, pos, d_model] for residual sites."""

    acts: dict[Site, Tensor]
    meta: dict = field(default_factory=dict)

    def __getitem__(self, site) -> Tensor:
        key = site if isinstance(site, Site) else Site(*site)
        if key not in self.acts:
            raise InputError(f"site {key} was not captured; captured: {[str(s) for s in self.acts]}")
        return self.acts[key]

    @property
    def sites(self) -> list[Site]:
        return list(self.acts)

    def __len__(self) -> int:
        return next(iter(self.acts.values())).shape[0]

    def stack_heads(self, positions: slice | int = -1) -> Float[Tensor, "batch layer head d_head"]:
        """All captured 'z' layers stacked, at one kept position (default: the last kept)."""
        zs = [self.acts[s] for s in sorted(self.acts, key=lambda s: s.layer) if s.kind == "z" and s.head is None]
        if not zs:
            raise InputError("no per-head ('z') layers were captured")
        return torch.stack([z[:, positions] for z in zs], dim=1)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(s): t.contiguous() for s, t in self.acts.items()}, str(path.with_suffix(".safetensors")))
        path.with_suffix(".json").write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, path: str | Path, model: ChatModel | None = None, allow_other_model: bool = False) -> "Activations":
        """A saved capture (a `.safetensors` + `.json` pair, or a `capture_to_disk` directory). With
        `model`, refuse activations captured on another model (fingerprint) unless `allow_other_model`."""
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():  # a sharded capture
            acts = _load_shards(path)
        else:
            st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
            for f in (st, js):
                if not f.exists():
                    raise ArtifactError(f"no capture at {path}: {f} is missing (a capture is a .safetensors file and a "
                                        ".json sidecar, or a directory written by capture_to_disk)")
            acts = cls({_parse_site_key(k): v for k, v in load_file(str(st)).items()}, json.loads(js.read_text()))
        if model is not None:
            from interp.fingerprint import check_made_on

            override = check_made_on(model, acts.meta, f"the capture at {path}", allow_other_model, require_fingerprint=True)
            if override:
                acts.meta["allow_other_model"] = override
        return acts


def _parse_site_key(k: str) -> Site:
    parts = k.split(".")
    return Site(parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None)


# ---------------------------------------------------------------- the shard format (capture_to_disk)
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# manifest fields that must agree for old shards to be reused
RESUME_KEYS = ("model_fingerprint", "prompts_sha256", "n_prompts", "sites", "positions", "shard_size", "dtype",
               "stored_dtype", "truncate")



def _manifest_id(man: dict) -> str:
    return hashlib.sha256(json.dumps({k: man.get(k) for k in RESUME_KEYS}, sort_keys=True).encode()).hexdigest()[:16]


def _shard_path(out: Path, k: int) -> Path:
    return out / f"shard_{k:05d}.safetensors"


def _shard_rows(man: dict, k: int) -> int:
    return min(man["shard_size"], man["n_prompts"] - k * man["shard_size"])


def _shard_problem(path: Path, k: int, man: dict) -> str | None:
    """Why shard `k` does not belong to the capture `man` describes, or None when it does."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            md, keys = f.metadata() or {}, set(f.keys())
            rows = {key: f.get_slice(key).get_shape()[0] for key in keys}
    except Exception as e:  # truncated or not a safetensors file
        return f"it cannot be read ({type(e).__name__}: {e})"
    if md.get("manifest") != _manifest_id(man):
        return "it was written for another capture (other model, prompts, sites, positions, shard size or dtype)"
    if md.get("shard") != str(k):
        return f"it holds shard {md.get('shard')}, not {k}"
    if keys != set(man["sites"]):
        return f"its sites {sorted(keys)} are not the manifest's {man['sites']}"
    want = _shard_rows(man, k)
    if any(r != want for r in rows.values()):
        return f"it has {sorted(set(rows.values()))} rows, not {want}"
    return None

def _shard_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _load_shards(out: Path) -> Activations:
    from safetensors.torch import load_file

    man_path, meta_path = out / MANIFEST, out / "meta.json"
    if not man_path.exists():
        if not meta_path.exists():
            raise ArtifactError(f"{out} holds no capture (no {MANIFEST} or meta.json); write one with capture_to_disk "
                                "(CLI: safety-heads capture)")
        return _load_legacy_shards(out)
    man = json.loads(man_path.read_text())
    good = [k for k in range(man["n_shards"]) if _shard_path(out, k).exists() and not _shard_problem(_shard_path(out, k), k, man)]
    if not meta_path.exists() or len(good) != man["n_shards"]:
        raise ArtifactError(f"the capture in {out} is incomplete: {len(good)} of {man['n_shards']} shards, rerun to resume "
                            "(the same capture command or capture_to_disk call)")
    meta = json.loads(meta_path.read_text())
    parts: dict[Site, list[Tensor]] = {}
    for k in range(man["n_shards"]):
        for key, v in load_file(str(_shard_path(out, k))).items():
            parts.setdefault(_parse_site_key(key), []).append(v)
    return Activations({s: torch.cat(v) for s, v in parts.items()}, meta)


def _load_legacy_shards(out: Path) -> Activations:
    """A directory written before manifests existed (meta.json written at the end)."""
    from safetensors.torch import load_file

    meta = json.loads((out / "meta.json").read_text())
    shards = sorted(out.glob("shard_*.safetensors"))
    if len(shards) != meta.get("n_shards", len(shards)):
        raise ArtifactError(f"the capture in {out} is incomplete: {len(shards)} of {meta['n_shards']} shards, rerun to resume")
    parts: dict[Site, list[Tensor]] = {}
    for sh in shards:
        for k, v in load_file(str(sh)).items():
            parts.setdefault(_parse_site_key(k), []).append(v)
    return Activations({s: torch.cat(v) for s, v in parts.items()}, meta)
