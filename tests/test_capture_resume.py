"""Sharded capture on disk: a manifest written first, every old shard checked on resume, other inputs
refused, atomic shards, an interrupted directory that says how far it got, and a resume after a
real kill of the capturing process."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from interp.capture import MANIFEST, Activations, capture, capture_to_disk
from interp.errors import ArtifactError, InputError
from interp.prompts import PromptSet

ROOT = Path(__file__).resolve().parents[1]


def _set(plain_prompts, n=10) -> PromptSet:
    return plain_prompts[:n]


def test_manifest_is_written_before_the_first_shard(tmp_path, organism, plain_prompts, monkeypatch):
    cap = importlib.import_module("interp.capture.shards")  # where capture_to_disk calls capture
    ps = _set(plain_prompts)
    seen = []

    def spy(*args, **kw):  # at the first shard's capture, the manifest must already be on disk
        seen.append((tmp_path / "cap" / MANIFEST).exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(cap, "capture", spy)
    with pytest.raises(KeyboardInterrupt):
        capture_to_disk(organism, ps, tmp_path / "cap", sites=["z"], shard_size=4, progress=False)
    assert seen == [True]
    man = json.loads((tmp_path / "cap" / MANIFEST).read_text())
    assert man["model_fingerprint"] == organism.fingerprint and man["prompts_sha256"] == ps.sha256()
    assert man["sites"] == [f"z.{l}" for l in range(organism.n_layers)]
    assert (man["positions"], man["shard_size"], man["n_shards"], man["dtype"]) == ("last", 4, 3, "float32")
    with pytest.raises(ArtifactError, match="incomplete: 0 of 3 shards, rerun to resume"):
        Activations.load(tmp_path / "cap")


@pytest.mark.parametrize("change, match", [
    ("shuffled", "prompts \\(or their order\\) differ"),
    ("shard_size", "shard size: 4 there, 3 now"),
    ("positions", "positions: 'last' there, \\[-2, -1\\] now"),
    ("sites", "sites"),
])
def test_resume_with_other_inputs_is_refused(tmp_path, organism, plain_prompts, change, match):
    ps = _set(plain_prompts)
    out = tmp_path / "cap"
    capture_to_disk(organism, ps, out, sites=["z"], shard_size=4, progress=False)
    (out / "shard_00002.safetensors").unlink()  # as if interrupted before the last shard
    (out / "meta.json").unlink()
    kw = dict(sites=["z"], shard_size=4, positions="last")
    if change == "shuffled":
        ps = PromptSet(ps.name, tuple(reversed(ps.prompts)), ps.source)  # same ids would match; the texts do not
    elif change == "shard_size":
        kw["shard_size"] = 3
    elif change == "positions":
        kw["positions"] = [-2, -1]
    else:
        kw["sites"] = ["resid_post"]
    with pytest.raises(InputError, match=match):
        capture_to_disk(organism, ps, out, progress=False, **kw)
    assert not (out / "shard_00002.safetensors").exists(), "a refused resume must not write shards"
    # --overwrite starts over with the new inputs, and the result is the new inputs' activations
    capture_to_disk(organism, ps, out, progress=False, overwrite=True, **kw)
    acts = Activations.load(out)
    direct = capture(organism, ps, kw["sites"], kw["positions"])
    site = ("z", 1) if kw["sites"] == ["z"] else ("resid_post", 1)
    torch.testing.assert_close(acts[site], direct[site], atol=1e-5, rtol=1e-4)
    assert acts.meta["positions"] == direct.meta["positions"] is not None


def test_foreign_shard_is_refused(tmp_path, organism, plain_prompts):
    """A shard that does not belong (copied from another capture) is caught by its own metadata."""
    a, b = tmp_path / "a", tmp_path / "b"
    capture_to_disk(organism, _set(plain_prompts), a, sites=["z"], shard_size=4, progress=False)
    capture_to_disk(organism, plain_prompts[10:20], b, sites=["z"], shard_size=4, progress=False)
    (a / "meta.json").unlink()
    (a / "shard_00001.safetensors").write_bytes((b / "shard_00001.safetensors").read_bytes())
    with pytest.raises(InputError, match="shard_00001.safetensors does not belong to this capture"):
        capture_to_disk(organism, _set(plain_prompts), a, sites=["z"], shard_size=4, progress=False)


def test_full_resume_keeps_the_resolved_positions(tmp_path, organism, plain_prompts):
    ps = _set(plain_prompts, 6)
    out = capture_to_disk(organism, ps, tmp_path / "cap", sites=["z"], positions="post_instruction", shard_size=3,
                          progress=False)
    first = json.loads((out / "meta.json").read_text())["positions"]
    capture_to_disk(organism, ps, out, sites=["z"], positions="post_instruction", shard_size=3, progress=False)
    assert json.loads((out / "meta.json").read_text())["positions"] == first and first.startswith("post_instruction[")


@pytest.mark.parametrize("size", [0, -5, 2.5, True])
def test_shard_size_must_be_positive(tmp_path, organism, plain_prompts, size):
    with pytest.raises(InputError, match="shard_size must be a positive integer"):
        capture_to_disk(organism, _set(plain_prompts), tmp_path / "cap", shard_size=size, progress=False)
    assert not (tmp_path / "cap").exists()


def test_old_directory_without_manifest(tmp_path, organism, plain_prompts):
    out = tmp_path / "cap"
    out.mkdir()
    (out / "shard_00000.safetensors").write_bytes(b"not a shard")
    with pytest.raises(InputError, match="no manifest"):
        capture_to_disk(organism, _set(plain_prompts), out, shard_size=4, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="holds no capture"):
        Activations.load(empty)


# ------------------------------------------------------------------ a real interruption
# The child captures through the CLI; its second shard's capture stalls, so the parent can kill it
# (SIGKILL: no cleanup runs) once the first shard file exists.
CHILD = """
import importlib, sys, time
cap = importlib.import_module("interp.capture.shards")  # where capture_to_disk calls capture
real, calls = cap.capture, [0]
def stalling(*a, **k):
    calls[0] += 1
    if calls[0] == 2:
        time.sleep(600)
    return real(*a, **k)
cap.capture = stalling
from interp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _prompt_file(path: Path, ps: PromptSet) -> Path:
    path.write_text("\n".join(json.dumps({"text": p.text, "label": p.label}) for p in ps))
    return path


def test_resume_after_the_process_is_killed(tmp_path, organism, plain_prompts):
    from interp.datasets import load_prompt_file

    ps = _set(plain_prompts)
    f = _prompt_file(tmp_path / "p.jsonl", ps)
    out = tmp_path / "cap"
    args = ["capture", "--prompts", str(f), "--sites", "z,resid_post", "--out", str(out), "--shard-size", "4"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, cwd=str(ROOT),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard_00000.safetensors").exists():
            assert child.poll() is None, f"capture exited early: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the first shard never appeared"
            time.sleep(0.1)
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000.safetensors"]
    with pytest.raises(ArtifactError, match="incomplete: 1 of 3 shards, rerun to resume"):
        Activations.load(out)

    # rerun the same command: shard 0 is checked and kept, 1 and 2 are captured
    from interp.cli import main

    before = (out / "shard_00000.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "shard_00000.safetensors").stat().st_mtime_ns == before
    acts = Activations.load(out)
    direct = capture(organism, load_prompt_file(f), ["z", "resid_post"], "last")
    for site in [("z", 0), ("resid_post", 3)]:
        torch.testing.assert_close(acts[site], direct[site], atol=1e-5, rtol=1e-4)
    assert acts.meta["n_prompts"] == 10 and acts.meta["positions"] == "last"

    # the same directory with the prompts shuffled: refused on the command line too
    g = _prompt_file(tmp_path / "q.jsonl", PromptSet("q", tuple(reversed(ps.prompts))))
    assert main(["capture", "--prompts", str(g), "--sites", "z,resid_post", "--out", str(out), "--shard-size", "4"]) == 2
