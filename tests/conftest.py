"""Shared fixtures: the embedded organism and tiny random models, loaded once per test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

# the organism and the tiny models are far too small to split across threads: one is as fast
# on an idle machine and many times faster on a shared one
torch.set_num_threads(1)


def strict_ci() -> bool:
    """`CI=true` (or 1/yes): the suite runs where everything it needs must be installed."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Something a test needs is absent (a shipped artifact, a browser, a dev package): skip on a
    developer's machine, fail under CI, where a skip would hide that the check never ran."""
    if strict_ci():
        pytest.fail(f"{reason} (CI=true: a missing requirement is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str):
    """`pytest.importorskip` that fails under CI."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)


@pytest.fixture(scope="session")
def organism():
    from interp.model import load_model

    return load_model("organism")


@pytest.fixture(scope="session")
def tiny():
    """2 layers x 4 heads (2 key/value heads), d_model 64, random weights."""
    from organisms.random import random_model

    return random_model(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, seed=0)


@pytest.fixture(scope="session")
def plain_prompts():
    from organisms.data import plain_prompts

    return plain_prompts(seed=0, n_per_label=32)


@pytest.fixture(scope="session")
def eval_prompts():
    from organisms.data import eval_prompts

    return eval_prompts(seed=99, per_cell=10)


# ---------------------------------------------------------------- R2D on a tiny random Llama
# the foreign vocabulary has none of the default English openers
R2D_WORDS = ["--refusal-phrases", "sorry", "--compliance-phrases", "certainly"]


def r2d_train_args(base, prompts, out, *extra):
    import foreign

    return ["r2d", "train", "--model", str(base), "--harmful", str(prompts / "harmful.csv"), "--harmless",
            str(prompts / "harmless.csv"), "--jailbreak", str(prompts / "jailbreak.csv"), "--answer-tokens", "4",
            "--out", str(out), "--refusal", foreign.REFUSAL, *R2D_WORDS, *extra]


@pytest.fixture(scope="session")
def r2d_setup(tmp_path_factory):
    """(root, tiny random Llama directory, prompt files directory with a jailbreak file)."""
    import architectures
    import foreign

    root = tmp_path_factory.mktemp("r2d_train")
    base = architectures.build("llama", root / "base", seed=0)
    prompts = architectures.write_prompts(root / "prompts")
    foreign._csv(prompts / "jailbreak.csv", ["text", "request", "family", "strength"], foreign.jailbreak_rows()[:9])
    return root, base, prompts


@pytest.fixture(scope="session")
def r2d_trained(r2d_setup):
    """`safety-heads r2d train` on the tiny Llama, end to end (exit status 0): the directory it writes."""
    from interp.cli import main

    root, base, prompts = r2d_setup
    out = root / "r2d"
    assert main(r2d_train_args(base, prompts, out, "--steps", "60", "--seed", "1", "--lr", "1e-2")) == 0
    return out
