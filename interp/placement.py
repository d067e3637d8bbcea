"""Where a model's weights live: one device, or split across devices, CPU memory and disk.

A split is done by accelerate through TransformerLens 4's `boot_transformers(device_map=...,
max_memory=..., offload_folder=..., n_devices=...)`; this module only describes the request and
parses it from the command line. Hooks see each layer's activations on that layer's device, so
every toolkit hook moves what it adds to `act.device`, and results come back on the CPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from interp.errors import InputError

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass(frozen=True)
class Placement:
    """`device_map`: an accelerate strategy ("auto", ...) or an explicit {module: device} map
    (devices: an int GPU index, "cuda:N", "cpu" or "disk"); `max_memory`: per-device budget
    ({0: "20GiB", "cpu": "60GiB"}); `offload_folder`: where "disk" weights go; `n_devices`: split
    over this many GPUs. All None: the whole model on `device`."""

    device_map: str | dict | None = None
    max_memory: dict = field(default_factory=dict)
    offload_folder: str | None = None
    n_devices: int | None = None

    def __post_init__(self) -> None:
        dm = self.device_map
        if isinstance(dm, str) and dm not in DEVICE_MAP_STRATEGIES:
            raise InputError(f"device map {dm!r} is not one of {DEVICE_MAP_STRATEGIES}; pass a strategy, or a JSON file "
                             "mapping module names to devices")
        if isinstance(dm, dict):
            for k, v in dm.items():
                if not (isinstance(v, int) or str(v) in ("cpu", "disk") or re.fullmatch(r"cuda(:\d+)?|mps", str(v))):
                    raise InputError(f"device map entry {k!r}: {v!r} is not a device (an int GPU index, 'cuda:N', 'cpu' or 'disk')")
            if "disk" in map(str, dm.values()) and not self.offload_folder:
                raise InputError("the device map puts weights on 'disk' but no offload folder was given: "
                                 "pass --offload-folder DIR (offload_folder=)")
        if self.n_devices is not None and self.n_devices < 1:
            raise InputError(f"n_devices must be at least 1, got {self.n_devices}")
        if (self.max_memory or self.offload_folder) and dm is None and self.n_devices is None:
            raise InputError("max_memory and offload_folder only apply to a split model: also pass a device map "
                             "(--device-map auto)")

    @property
    def split(self) -> bool:
        return self.device_map is not None or (self.n_devices or 1) > 1

    def boot_kwargs(self) -> dict:
        """Keyword arguments for `TransformerBridge.boot_transformers` (device is then left unset)."""
        kw: dict = {}
        if self.device_map is not None:
            kw["device_map"] = self.device_map
        if self.max_memory:
            kw["max_memory"] = dict(self.max_memory)
        if self.offload_folder:
            Path(self.offload_folder).mkdir(parents=True, exist_ok=True)
            kw["offload_folder"] = str(self.offload_folder)
        if self.n_devices is not None:
            kw["n_devices"] = self.n_devices
        return kw

    def describe(self) -> dict:
        return {"device_map": self.device_map, "max_memory": dict(self.max_memory), "offload_folder": self.offload_folder,
                "n_devices": self.n_devices}

    @classmethod
    def from_args(cls, device_map: str | None = None, max_memory: str | None = None,
                  offload_folder: str | None = None, n_devices: int | None = None) -> "Placement | None":
        """From CLI strings: `--device-map auto|FILE.json`, `--max-memory 0=20GiB,cpu=60GiB`."""
        if device_map is None and max_memory is None and offload_folder is None and n_devices is None:
            return None
        dm: str | dict | None = device_map
        if device_map is not None and device_map not in DEVICE_MAP_STRATEGIES:
            p = Path(device_map)
            if not p.is_file():
                raise InputError(f"--device-map {device_map!r} is neither a strategy {DEVICE_MAP_STRATEGIES} nor an existing JSON file")
            try:
                dm = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"--device-map file {p} is not valid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(dm, dict):
                raise InputError(f"--device-map file {p} must hold a JSON object mapping module names to devices")
        return cls(dm, parse_max_memory(max_memory) if max_memory else {}, offload_folder, n_devices)


def parse_max_memory(text: str) -> dict:
    """'0=20GiB,cpu=60GiB' -> {0: '20GiB', 'cpu': '60GiB'}."""
    out: dict = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep or not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B)?", val.strip(), flags=re.I):
            raise InputError(f"--max-memory entry {part!r} must look like DEVICE=SIZE, e.g. 0=20GiB or cpu=60GiB")
        key = key.strip()
        out[int(key) if key.isdigit() else key] = val.strip()
    if not out:
        raise InputError("--max-memory is empty; give e.g. 0=20GiB,cpu=60GiB")
    return out
