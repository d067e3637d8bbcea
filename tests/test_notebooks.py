"""The research notebooks run top to bottom on the organism and write their figures; none is
committed with outputs.

Each notebook is executed with nbclient in a fresh kernel of *this* interpreter (the venv's python
with ipykernel installed: `scripts/setup.sh` installs the dev extra), with a per-cell timeout.
Figures go to a temporary folder through `SAFETY_HEADS_FIGURES`, so a test run leaves the
repository's `figures/` alone. A notebook whose cell raises `SkipNotebook` (a part of the
toolkit or a shipped artifact it needs is missing) is reported as skipped with that cell's
message, and fails under CI=true. Each notebook ends with a "# Headline check" cell that asserts
its headline result, so running it checks it.

Strip outputs from a notebook you edited in JupyterLab before committing:
    python tests/test_notebooks.py --strip notebooks/*.ipynb
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 240  # per cell; each notebook is meant to run in under 3 minutes on 2 CPU cores

# notebook -> figure files (under the figures folder) it must write
EXPECTED_FIGURES = {
    "01_quickstart.ipynb": ["01_refusal_by_family.html", "01_top_heads_heatmap.html"],
    "02_which_heads_to_steer.ipynb": ["02_probe_heads.html", "02_patching_heads.html", "02_dla_heads.html",
                                      "02_methods_side_by_side.html", "02_probe_vs_ablation.html"],
    "03_steering.ipynb": ["03_single_head_effects.html", "03_tradeoff.html", "03_tradeoff_kl.html",
                          "03_jailbreak_by_family.html"],
    "04_attention_slipping.ipynb": ["04_slipping_steps_distractor.html", "04_slipping_lines.html",
                                    "04_tokens_topicmix.html", "04_tokens_topicmix_sharpened.html",
                                    "04_attack_course.html", "04_sharpening_temperature.html", "04_defenses.html"],
    "05_reasoning_to_defend.ipynb": ["05_r2d_vs_base.html", "05_over_refusal_by_topic.html", "05_pivot_heads.html"],
    "06_real_model.ipynb": ["06_behaviour.html", "06_jailbreak_dose.html", "06_dla_heads.html", "06_steering.html"],
}


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def strip_outputs(nb) -> bool:
    """Remove outputs, execution counts and per-run metadata in place; True when anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            cell.outputs = []
            changed = True
        if cell.get("execution_count") is not None:
            cell.execution_count = None
            changed = True
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in ("widgets",):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def _kernel_manager():
    """A kernel manager that always starts ipykernel under this interpreter, whatever kernelspecs
    the user has installed elsewhere (a user-level 'python3' spec could point at another python)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPythonKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            spec = get_kernel_dict()
            spec["argv"][0] = sys.executable
            return KernelSpec(resource_dir=RESOURCES, **spec)

    return KernelManager(kernel_name="python3", kernel_spec_manager=ThisPythonKernelSpecs())


def test_every_notebook_has_expected_figures():
    names = {p.name for p in all_notebooks()}
    assert names, f"no notebooks in {NOTEBOOKS}"
    assert names == set(EXPECTED_FIGURES), (
        f"notebooks {sorted(names)} and the figure table {sorted(EXPECTED_FIGURES)} differ: add the new notebook's "
        "figures to EXPECTED_FIGURES")


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, (f"{path.name} has outputs in cells {dirty}; strip them before committing: "
                       f"python tests/test_notebooks.py --strip {path.relative_to(ROOT)}")


def test_notebooks_show_how_to_switch_to_a_hub_model():
    for path in all_notebooks():
        cells = json.loads(path.read_text())["cells"]
        src = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "USE_HUB_MODEL = False" in src, f"{path.name}: no guarded hub-model cell (USE_HUB_MODEL = False)"
        assert "dtype=torch.bfloat16" in src and 'device="cuda"' in src, f"{path.name}: hub cell must show dtype and device"


def test_notebooks_start_with_one_setup_call():
    """The set-up lives in `interp.notebook.setup()`: each notebook's first code cell is a few lines."""
    for path in all_notebooks():
        cells = json.loads(path.read_text())["cells"]
        first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        lines = [line for line in first.splitlines() if line.strip()]
        assert len(lines) <= 4 and "from interp.notebook import" in first and "setup(" in first, (path.name, first)


def test_setup_makes_the_figures_folder_and_skips_cleanly(tmp_path, monkeypatch, capsys):
    from interp.notebook import SkipNotebook, find_repo_root, setup

    monkeypatch.setenv("SAFETY_HEADS_FIGURES", str(tmp_path / "figs"))
    nb = setup(requires=("interp.causal",), start=ROOT / "notebooks")
    assert nb.root == ROOT and nb.figures == tmp_path / "figs" and nb.figures.is_dir() and nb.elapsed() >= 0
    assert "figures:" in capsys.readouterr().out
    assert find_repo_root(tmp_path) == ROOT  # outside any checkout: the one the toolkit came from
    with pytest.raises(SkipNotebook, match="no_such_part") as info:
        setup(requires=("interp.no_such_part", "no_such_package.sub"))
    assert "no_such_package.sub" in str(info.value)
    assert info.value._render_traceback_() == [f"SKIPPED: {info.value}"]


def execute_notebook(path: Path, figures: Path, monkeypatch) -> tuple[object, float]:
    """Run a notebook top to bottom in a fresh kernel; a `SkipNotebook` raised by a cell (a part of
    the toolkit or a shipped artifact it needs is missing) skips locally and fails under CI=true."""
    from conftest import missing, require_module

    require_module("ipykernel", "ipykernel is not installed: pip install -e '.[dev]'")
    nbclient = require_module("nbclient", "nbclient is not installed: pip install -e '.[dev]'")
    import nbformat
    from nbclient.exceptions import CellExecutionError

    # the kernel inherits this environment: a temporary figures folder, offline hub, one thread per op
    monkeypatch.setenv("SAFETY_HEADS_FIGURES", str(figures))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(), timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    t = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:
        if getattr(e, "ename", "") == "SkipNotebook":
            missing(f"{path.name}: {e.evalue}")
        raise
    return nb, time.perf_counter() - t


def test_skipped_notebook_fails_under_ci(tmp_path, monkeypatch):
    """A notebook that stops itself (e.g. the shipped R2D organism would not load) is a failure in CI."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "class SkipNotebook(Exception):\n    pass\nraise SkipNotebook('the shipped R2D organism is missing')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "skips.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException) as info:
        execute_notebook(path, tmp_path / "figures", monkeypatch)
    assert info.type is pytest.fail.Exception, f"under CI=true a skipped notebook must fail, not {info.typename}"
    assert "R2D organism is missing" in str(info.value)


def test_every_notebook_asserts_its_headline_result():
    """Running a notebook checks it: each has a cell that asserts its headline result."""
    for path in all_notebooks():
        cells = json.loads(path.read_text())["cells"]
        checks = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith("# Headline check")]
        assert checks, f"{path.name}: no '# Headline check' cell"
        assert sum("".join(c["source"]).count("\nassert ") for c in checks) >= 2, f"{path.name}: the check asserts too little"


@pytest.mark.slow
@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    nb, seconds = execute_notebook(path, figures, monkeypatch)
    print(f"{path.name}: executed in {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {[(o.ename, o.evalue) for o in errors]}"
    missing = [f for f in EXPECTED_FIGURES[path.name] if not (figures / f).is_file()]
    assert not missing, f"{path.name} did not write {missing} (wrote {sorted(p.name for p in figures.glob('*'))})"
    for f in EXPECTED_FIGURES[path.name]:
        head = (figures / f).read_text(errors="replace")[:200000]
        assert "plotly" in head.lower() and "<html" in head.lower(), f"{f} is not a standalone plotly HTML page"


def _main(argv: list[str]) -> int:
    """`--strip FILES...`: remove outputs in place (what the no-outputs test asks for)."""
    import nbformat

    if not argv or argv[0] != "--strip":
        print(__doc__)
        return 2
    for name in argv[1:] or [str(p) for p in all_notebooks()]:
        nb = nbformat.read(name, as_version=4)
        if strip_outputs(nb):
            nbformat.write(nb, name)
            print(f"stripped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
