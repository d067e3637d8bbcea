"""A capture too large for memory, streamed to safetensors shards (`capture_to_disk`): a manifest
first, each shard written to a temporary file and renamed, `meta.json` last; a rerun resumes after
checking every shard, other inputs are refused. `Activations.load(dir)` reads the result back
(the format: `interp.capture.activations`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from interp.capture.activations import (MANIFEST, MANIFEST_VERSION, RESUME_KEYS, _manifest_id, _shard_metadata,
                                        _shard_path, _shard_problem)
from interp.capture.reads import _meta, _positive_int, capture
from interp.capture.sites import Positions, Site, parse_positions, parse_sites
from interp.errors import InputError
from interp.model import ChatModel, texts
from interp.prompts import PromptSet

if TYPE_CHECKING:
    from interp.distributed import World

def _prompts_sha256(prompts) -> str:
    """Hash of the prompts in order (texts and, for a PromptSet, labels, families, strengths)."""
    if isinstance(prompts, PromptSet):
        return prompts.sha256()
    return hashlib.sha256(json.dumps(texts(prompts)).encode()).hexdigest()[:16]


def _manifest(model: ChatModel, prompts, sites: list[Site], positions, shard_size: int, truncate: bool) -> dict:
    n = len(texts(prompts))
    man = {"format": "safety-heads sharded capture", "version": MANIFEST_VERSION, **_meta(model, prompts, sites, None)}
    # positions: the request ('last', 'post_instruction', [indices]); each shard records the resolved label
    man.update(prompts_sha256=_prompts_sha256(prompts), n_prompts=n, positions=positions, shard_size=shard_size,
               n_shards=(n + shard_size - 1) // shard_size, stored_dtype="float32", truncate=bool(truncate),
               dtype=str(model.dtype).removeprefix("torch."))
    return man


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _clear_capture(out: Path) -> None:
    """Remove a previous capture's files (only those: other files in the directory stay)."""
    for f in [*out.glob("shard_*.safetensors"), *out.glob("shard_*.tmp"), *out.glob("*.json.tmp"),
              out / MANIFEST, out / "meta.json"]:
        if f.exists():
            f.unlink()


def capture_to_disk(model: ChatModel, prompts, out_dir: str | Path, sites="z", positions: Positions = "last",
                    shard_size: int = 256, batch_size: int = 32, truncate: bool | None = None, progress: bool = True,
                    overwrite: bool = False, world: "World | None" = None) -> Path:
    """Capture a set too large for memory into safetensors shards. Load the whole with
    `Activations.load(out_dir)`.

    A manifest (model fingerprint, prompt hash, sites, positions, shard size, dtype) is written
    before the first shard. Rerunning with the same inputs resumes at the first missing shard after
    checking every existing shard against the manifest; other inputs are refused (`overwrite=True`
    starts over). Each shard is written to a temporary file and renamed, so a killed run never
    leaves a partial shard; `meta.json` is written last and marks the capture complete.

    Under torchrun (`world`, from `interp.distributed.world()`), rank 0 writes or checks the
    manifest, rank r writes shards r, r + N, r + 2N, ..., and rank 0 writes `meta.json` once every
    shard exists: the directory is the one a single process writes, shard for shard.
    """
    from interp.distributed import World

    world = world or World()

    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("capture needs at least one prompt; the prompt list is empty")
    shard_size = _positive_int(shard_size, "shard_size")
    batch_size = _positive_int(batch_size, "batch_size")
    truncate = model.truncate if truncate is None else truncate
    site_list = parse_sites(model, sites)
    positions = parse_positions(positions)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; capture_to_disk writes a directory: pass another path")
    man = _manifest(model, prompts, site_list, positions, shard_size, truncate)
    # rank 0 alone prepares the directory; every rank raises the same error if that fails
    _all_or_none(world, lambda: _prepare_directory(out, man, overwrite) if world.is_main else None)
    mine = [k for k in range(man["n_shards"]) if k % world.size == world.rank]
    labels: dict[int, str] = {}
    for part in _all_or_none(world, lambda: _write_shards(model, prompt_texts, out, man, mine, site_list, positions, batch_size,
                                                         truncate, progress and world.is_main)):
        labels.update(part)
    if len(set(labels.values())) > 1:  # every rank holds every label: all raise together
        raise InputError(f"the shards of {out} resolved the positions differently ({sorted(set(labels.values()))}): "
                         "post-instruction token counts differ between prompts; use positions='last' or indices")
    if not world.is_main:
        world.barrier()  # rank 0 writes meta.json; return once the capture is complete
        return out
    meta = {k: v for k, v in man.items() if k not in ("format", "version")}
    meta.update(positions=labels[0], positions_requested=positions)
    _write_json_atomic(out / "meta.json", meta)  # last: marks the capture complete
    world.barrier()
    return out


def _prepare_directory(out: Path, man: dict, overwrite: bool) -> None:
    """Clear (overwrite), create, and check or write the manifest of a sharded capture."""
    if overwrite and out.exists():
        _clear_capture(out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / MANIFEST
    if man_path.exists():
        _check_resume(out, json.loads(man_path.read_text()), man)
    else:
        if any(out.glob("shard_*.safetensors")) or (out / "meta.json").exists():
            raise InputError(f"{out} holds a capture with no manifest (an older toolkit version, or another tool): its "
                             "shards cannot be checked. Pass overwrite=True (CLI: --overwrite) to start over, or use an "
                             "empty directory")
        _write_json_atomic(man_path, man)
    for stale in out.glob("shard_*.tmp"):  # left by a killed run: never a complete shard
        stale.unlink()


def _write_shards(model: ChatModel, texts: list[str], out: Path, man: dict, shards: list[int], site_list: list[Site],
                  positions, batch_size: int, truncate: bool, progress: bool) -> dict[int, str]:
    """Write (or, resuming, check) the given shards; return each shard's resolved positions label."""
    from safetensors.torch import save_file

    mid, shard_size = _manifest_id(man), man["shard_size"]
    labels: dict[int, str] = {}
    for k in tqdm(shards, desc="capture shards", disable=not progress):
        shard = _shard_path(out, k)
        if shard.exists():
            problem = _shard_problem(shard, k, man)
            if problem:
                raise InputError(f"{shard} does not belong to this capture: {problem}. Pass overwrite=True "
                                 "(CLI: --overwrite) to start over")
            labels[k] = _shard_metadata(shard)["positions"]
            continue  # resume
        sub = texts[k * shard_size:(k + 1) * shard_size]
        acts = capture(model, sub, site_list, positions, batch_size, truncate)
        labels[k] = acts.meta["positions"]
        tmp = shard.with_suffix(".tmp")
        save_file({str(s): t.contiguous() for s, t in acts.acts.items()}, str(tmp),
                  metadata={"manifest": mid, "shard": str(k), "positions": labels[k],
                            "prompts_sha256": _prompts_sha256(sub)})
        os.replace(tmp, shard)  # atomic: a killed run never leaves a half shard that resume would trust
    return labels


def _all_or_none(world: "World", step):
    """Run `step` on every rank; if it raised on any rank, raise on all (no rank left waiting in a
    collective). Returns every rank's result, in rank order."""
    if not world.distributed:
        return [step()]
    try:
        result, error = step(), None
    except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
        result, error = None, e
    outcomes = world.gather((result, None if error is None else (type(error).__name__, str(error))))
    if error is not None:
        raise error
    failed = [(r, err) for r, (_, err) in enumerate(outcomes) if err is not None]
    if failed:
        r, (kind, msg) = failed[0]
        raise InputError(f"rank {r} failed ({kind}): {msg}")
    return [res for res, _ in outcomes]


def _check_resume(out: Path, old: dict, new: dict) -> None:
    diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    if not diff:
        return
    what = {"model_fingerprint": "model", "prompts_sha256": "prompts (or their order)", "n_prompts": "number of prompts",
            "sites": "sites", "positions": "positions", "shard_size": "shard size", "dtype": "model dtype",
            "stored_dtype": "stored dtype", "truncate": "truncation"}
    shown = "; ".join(f"{what[k]}: {old.get(k)!r} there, {new.get(k)!r} now" if k not in ("prompts_sha256", "model_fingerprint")
                      else f"{what[k]} differ" for k in diff)
    raise InputError(f"{out} holds a capture made with other inputs ({shown}). Rerun with the same inputs to resume, pass "
                     "overwrite=True (CLI: --overwrite) to start over, or use another directory")
