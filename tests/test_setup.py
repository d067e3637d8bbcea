"""scripts/setup.sh: --cuda installs the locked torch's CUDA build (only the torch line changes) and
--dry-run shows what it would run without running anything."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "scripts" / "setup.sh"), *args], capture_output=True, text=True, timeout=60)


def locked_torch(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("torch=="))


def test_cuda_dry_run_resolves_the_cuda_torch_line_and_installs_nothing():
    venv_before = (ROOT / ".venv").exists()
    r = setup("--cuda", "--dry-run")
    assert r.returncode == 0, r.stderr
    cpu, cuda = locked_torch(ROOT / "requirements.lock"), locked_torch(ROOT / "requirements-cuda.lock")
    assert re.fullmatch(re.escape(cpu) + r"\+cu\d+", cuda)  # the same version, a CUDA build
    index = next(l.split()[1] for l in (ROOT / "requirements-cuda.lock").read_text().splitlines() if l.startswith("--index-url"))
    tag = cuda.split("+")[1]
    assert index.endswith("/" + tag)  # the index serves that CUDA build
    lines = r.stdout.splitlines()
    assert f"# CUDA torch: {cuda} from {index}" in lines
    # torch comes from the CUDA lock, first; then the whole lock, unchanged
    installs = [l for l in lines if " pip install " in l]
    assert installs[1].endswith("-r requirements-cuda.lock") and installs[2].endswith("-r requirements.lock")
    assert not any(l.endswith(cpu) for l in installs)  # the CPU torch line is not installed
    assert (ROOT / ".venv").exists() == venv_before


def test_default_installs_the_locked_torch_line():
    r = setup("--dry-run")
    assert r.returncode == 0, r.stderr
    assert any(l.endswith(f'install -q {locked_torch(ROOT / "requirements.lock")}') for l in r.stdout.splitlines())
    assert "requirements-cuda.lock" not in r.stdout


def test_bad_options_and_drifted_locks_are_one_line(tmp_path):
    r = setup("--cdua")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown option --cdua" in r.stderr
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    (tmp_path / "requirements-cuda.lock").write_text("--index-url https://example.invalid/cu128\ntorch==0.1.0+cu128\n")
    r = setup("--cuda", "--dry-run", root=tmp_path)
    assert r.returncode == 1 and "make them the same version" in r.stderr
