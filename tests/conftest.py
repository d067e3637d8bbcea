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
