"""Check that the installed packages are exactly the locked ones (run by scripts/setup.sh).

Exit 1 with the list of differences otherwise: numbers measured on another set of versions are
not the numbers the suite was checked on (transformers 5.24 silently broke cached generation)."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def differences(pins: dict[str, str]) -> list[str]:
    out = []
    for name, want in pins.items():
        try:
            have = version(name)
        except PackageNotFoundError:
            out.append(f"{name}: locked {want}, not installed")
            continue
        if have.split("+")[0] != want.split("+")[0]:  # torch's local label (+cpu) is the build, not the version
            out.append(f"{name}: locked {want}, installed {have}")
    return out


def main() -> int:
    pins = {}
    for name in ("requirements.lock", "requirements-nodeps.lock"):
        if (ROOT / name).exists():
            pins.update(locked(ROOT / name))
    diff = differences(pins)
    if diff:
        print("check_lock: the installed packages differ from the lock:\n  " + "\n  ".join(diff)
              + "\nReinstall with bash scripts/setup.sh (or pip install -r requirements.lock).", file=sys.stderr)
        return 1
    print(f"check_lock: {len(pins)} locked packages installed at their locked versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
