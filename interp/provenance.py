"""What every saved artifact and report records about the software that made it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
    from interp import __version__

    return {"toolkit_version": __version__, "libraries": library_versions()}
