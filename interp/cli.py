"""`safety-heads` command line: one subcommand per stage. Feature modules add theirs through
`COMMANDS` (module path -> its `register(subparsers)`), so this file stays a table of contents."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from interp.errors import SafetyHeadsError

# modules that define `register(subparsers)`; a missing optional module is skipped
COMMANDS = ["interp.cli_core", "probes.cli", "interp.causal.cli", "interp.steering.cli", "interp.slipping.cli", "interp.r2d.cli", "interp.figures_cli"]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model and friends, the same on every command."""
    p.add_argument("--model", default="organism", help="Hugging Face name or local directory (default: the embedded organism; organism:mha for the MHA variant)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--chat-template", default=None, help="Jinja chat template (string or file) for a tokenizer that has none")
    p.add_argument("--device-map", default=None,
                   help="split the model: an accelerate strategy (auto, balanced, sequential) or a JSON file {module: device|cpu|disk}")
    p.add_argument("--max-memory", default=None, help="per-device budget for --device-map, e.g. 0=20GiB,1=20GiB,cpu=60GiB")
    p.add_argument("--offload-folder", default=None, help="folder for weights --device-map puts on disk")
    p.add_argument("--truncate", action="store_true", help="keep the last tokens of prompts longer than the context (default: error)")


def add_study_args(p: argparse.ArgumentParser, out_default: str | None = None) -> None:
    """--out, --seed, --per-cell and --png, the same on every command that runs demo sections."""
    p.add_argument("--out", default=out_default, required=out_default is None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-cell", type=int, default=20, help="held-out prompts per (label, family, strength)")
    p.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + chromium)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safety-heads", description="Find and steer the parts of a chat model that decide between refusing and complying.")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in COMMANDS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is not None and mod.startswith(e.name):
                continue
            raise
        m.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from interp.cli_checks import check_args

        check_args(args)  # every argument and file, before any model loads
        result = args.func(args)
    except SafetyHeadsError as e:
        print(f"safety-heads: error: {e}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
