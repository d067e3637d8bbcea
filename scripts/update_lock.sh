#!/usr/bin/env bash
# Re-resolve the newest versions, run the whole suite on them, and rewrite requirements.lock only
# if the suite passes. Nothing in .venv is touched: the candidate set lives in a scratch venv.
#
#   bash scripts/update_lock.sh              # newest versions within pyproject.toml's ranges
#   bash scripts/update_lock.sh --unbounded  # also try past the upper bounds (e.g. a new transformers);
#                                            # on success, raise the bound in pyproject.toml by hand
# Environment: TORCH_VERSION (default: the locked torch), PYTHON (default python3), KEEP_VENV=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
UNBOUNDED=0
[ "${1:-}" = "--unbounded" ] && UNBOUNDED=1
TORCH=${TORCH_VERSION:-$(grep -E '^torch==' requirements.lock | head -n1 | cut -d= -f3)}
WORK=$(mktemp -d)
trap '[ "${KEEP_VENV:-0}" = 1 ] || rm -rf "$WORK"' EXIT
echo "update_lock: resolving in $WORK (torch $TORCH)"
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin/python"
"$V" -m pip install -q --upgrade pip
"$V" -m pip install -q "torch==$TORCH"
SRC="$WORK/src"
mkdir -p "$SRC"
git ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$SRC")
if [ "$UNBOUNDED" = 1 ]; then
    # drop every "<..." upper bound in the dependency list, keep the lower bounds
    sed -i -E 's/,<[^",]+"/"/' "$SRC/pyproject.toml"
fi
EXTRAS=$("$V" -c 'import sys, tomllib; print(",".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]))' "$SRC/pyproject.toml")
"$V" -m pip install -q --upgrade --upgrade-strategy eager -e "$SRC[$EXTRAS]" "torch==$TORCH"
if [ -f requirements-nodeps.lock ]; then
    grep -vE '^\s*(#|$)' requirements-nodeps.lock | sed -E 's/==.*//' | xargs -r "$V" -m pip install -q --no-deps --upgrade
fi
"$V" -m pip freeze --exclude-editable | grep -viE '^(-e |safety-heads)' > "$WORK/freeze.txt"
echo "update_lock: candidate set:"; grep -iE '^(torch|transformers|transformer-lens|tokenizers|numpy|safetensors)==' "$WORK/freeze.txt" | sed 's/^/  /'
echo "update_lock: running the suite on it"
if (cd "$SRC" && CI=true "$V" -m pytest -q -p no:cacheprovider); then
    {
        echo "# Every package version the test suite passed on; scripts/setup.sh installs exactly this."
        echo "# Regenerate with: bash scripts/update_lock.sh   (it rewrites this file only if the suite passes)"
        echo "# Resolved $(date -u +%Y-%m-%d) with $("$V" --version) on $(uname -m); torch is the CPU build."
        sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' "$WORK/freeze.txt" | grep -vE "^($(grep -vE '^\s*(#|$)' requirements-nodeps.lock 2>/dev/null | sed -E 's/==.*//' | paste -sd'|' -))==" || true
    } > "$ROOT/requirements.lock.new"
    mv "$ROOT/requirements.lock.new" "$ROOT/requirements.lock"
    if [ -f requirements-nodeps.lock ]; then
        for pkg in $(grep -vE '^\s*(#|$)' requirements-nodeps.lock | sed -E 's/==.*//'); do
            v=$(grep -iE "^$pkg==" "$WORK/freeze.txt" | head -n1 | cut -d= -f3)
            [ -n "$v" ] && sed -i -E "s/^$pkg==.*/$pkg==$v/" requirements-nodeps.lock
        done
    fi
    if [ -f requirements-cuda.lock ]; then  # the CUDA build of the same torch version (setup.sh --cuda)
        sed -i -E "s/^torch==[0-9][0-9.]*\+/torch==$TORCH+/" requirements-cuda.lock
    fi
    echo "update_lock: suite passed; requirements.lock rewritten (review with git diff, then commit)"
else
    echo "update_lock: the suite FAILED on the newest versions; requirements.lock is unchanged" >&2
    exit 1
fi
