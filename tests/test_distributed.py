"""Data-parallel capture under torchrun: 2 CPU processes (gloo) write the directory one process
writes, shard for shard and bit for bit, with the same manifest and provenance."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.capture import Activations
from interp.distributed import World, in_order

ROOT = Path(__file__).resolve().parent.parent


def test_slices_cover_every_item_once_in_order():
    for n in (0, 1, 5, 8, 13):
        for size in (1, 2, 3, 4):
            parts = [list(World(r, size).slice(n)) for r in range(size)]
            assert in_order(parts) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _run(args, nproc: int, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MASTER_ADDR": "127.0.0.1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "interp", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "interp", *args]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    if nproc > 1 and done.returncode != 0 and "SIGABRT" in done.stderr:
        # Known, unfixed: in about one full-suite run in five, rank 1 of a two-process capture died
        # of SIGABRT and torchrun stopped rank 0 (12 of 12 runs of the command alone were clean; the
        # cause, likely gloo's teardown, is not found). The run is repeated once: a second abort
        # fails, and the caller still checks everything the run wrote.
        warnings.warn(f"torchrun rank aborted at teardown; rerunning once: {done.stderr[-300:]}")
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return done


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    from organisms.data import plain_prompts

    f = tmp_path_factory.mktemp("prompts") / "p.jsonl"
    plain_prompts(seed=7, n_per_label=11).to_jsonl(f)  # 22 prompts: 6 shards of 4 (the last of 2)
    return f


def test_two_processes_write_what_one_process_writes(prompt_file, tmp_path):
    common = ["capture", "--prompts", str(prompt_file), "--sites", "z,resid_post", "--positions", "post_instruction",
              "--shard-size", "4"]
    one = _run([*common, "--out", str(tmp_path / "one")], 1, tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*common, "--out", str(tmp_path / "two")], 2, tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads(two.stdout[two.stdout.index("{"):])["processes"] == 2  # rank 0 alone reported
    shards = sorted(p.name for p in (tmp_path / "one").glob("shard_*.safetensors"))
    assert len(shards) == 6 and shards == sorted(p.name for p in (tmp_path / "two").glob("shard_*.safetensors"))
    for name in shards:
        a, b = load_file(str(tmp_path / "one" / name)), load_file(str(tmp_path / "two" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    for meta in ("manifest.json", "meta.json"):
        assert json.loads((tmp_path / "one" / meta).read_text()) == json.loads((tmp_path / "two" / meta).read_text())
    x, y = Activations.load(tmp_path / "one"), Activations.load(tmp_path / "two")
    assert x.meta["prompt_ids"] == y.meta["prompt_ids"] and len(y) == 22
    assert all(torch.equal(x[s], y[s]) for s in x.sites)


def test_a_failure_on_one_rank_stops_every_rank_with_one_message(prompt_file, tmp_path):
    out = tmp_path / "cap"
    common = ["capture", "--prompts", str(prompt_file), "--sites", "z", "--shard-size", "4", "--out", str(out)]
    assert _run(common, 2, tmp_path).returncode == 0
    # resuming with another shard size is refused by rank 0; rank 1 must not hang waiting for it
    bad = _run([*common[:-4], "--shard-size", "5", "--out", str(out)], 2, tmp_path)
    assert bad.returncode != 0 and "shard size" in bad.stderr


def test_two_processes_evaluate_what_one_process_evaluates(tmp_path):
    """`torchrun -m interp eval`: each rank generates and scores its share of the batches one process
    forms; rank 0 prints the same behaviour table, to the last digit."""
    common = ["eval", "--per-cell", "3", "--n-train", "40"]
    one = _run([*common, "--out", str(tmp_path / "one.json")], 1, tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*common, "--out", str(tmp_path / "two.json")], 2, tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert a["n_prompts"] > 2 * 64  # more than two generation batches, so both ranks worked
    assert a.pop("completions").endswith("one.completions.jsonl") and b.pop("completions").endswith("two.completions.jsonl")
    assert a == b
    # every answer too, in the same order (rank 0 alone wrote the file)
    assert (tmp_path / "one.completions.jsonl").read_text() == (tmp_path / "two.completions.jsonl").read_text()
    assert two.stdout.count('"refusal_rate"') == 1  # rank 0 alone printed the table


def test_world_merge_refuses_missing_rows():
    w = World(0, 1)
    assert w.share([1, 2, 3]) == [1, 2, 3] and w.merge({0: "a", 1: "b"}, 2) == ["a", "b"]
    with pytest.raises(RuntimeError, match="1 of 2 rows"):
        w.merge({0: "a"}, 2)
    assert [World(r, 2).share(list("abcde")) for r in (0, 1)] == [list("ace"), list("bd")]
