"""What every saved artifact and report records about the software that made it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# the toolkit's version (pyproject.toml says the same); `interp.__version__` re-exports it. Kept here,
# below every other module, so that recording it never imports the `interp` package back
__version__ = "0.1.0"
LIBRARIES = ("torch", "transformers", "transformer-lens", "tokenizers", "safetensors", "numpy")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose behaviour decides the toolkit's numbers."""
    out = {}
    for pkg in LIBRARIES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def provenance() -> dict:
    """`{"toolkit_version": ..., "libraries": {...}}`, merged into every artifact's metadata."""
    return {"toolkit_version": __version__, "libraries": library_versions()}
