"""`safety-heads` command line: one subcommand per stage. Feature modules add theirs through
`COMMANDS` (module path -> its `register(subparsers)`), so this file stays a table of contents;
a model source adds its own (`interp.sources.ModelSource.commands`: `safety-heads organism`, `r2d`).

Every command that runs a study takes the same options, with the same defaults, through
`add_study_options` (the defaults are `interp.study.StudyConfig`'s): loading (--model, --device,
--dtype, --chat-template), data (--harmful, --harmless, --jailbreak, --over-refusal, --text-column,
--system-prompt, --category, --max-per-label, --families, --strengths), judging (--refusal-phrases, --compliance-phrases, --max-new-tokens, --labels) and the study's seed
and sizes. `study_config(args)` turns them into a `StudyConfig`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from interp.errors import SafetyHeadsError

# modules that define `register(subparsers)`; a missing optional module is skipped
COMMANDS = ["interp.commands.core", "interp.commands.judge", "interp.commands.rank", "interp.commands.causal", "interp.commands.steer", "interp.commands.slipping", "interp.commands.figures", "interp.commands.export", "interp.commands.r2d", "interp.commands.apply"]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model and friends, the same on every command."""
    from interp.study import StudyConfig

    d = StudyConfig()
    p.add_argument("--model", default=d.model, help="Hugging Face name, local directory, or registry model "
                   "(smollm2-135m-instruct); default: the embedded organism (organism:mha for the MHA variant)")
    p.add_argument("--device", default=d.device,
                   help="where the model runs: cpu (default), cuda, cuda:N or mps; checked before the weights load "
                        "(a CPU-only torch cannot use cuda: scripts/setup.sh --cuda installs the CUDA build)")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--chat-template", default=d.chat_template, help="Jinja chat template (string or file) for a tokenizer that has none")
    p.add_argument("--device-map", default=d.device_map,
                   help="split the model: an accelerate strategy (auto, balanced, sequential) or a JSON file {module: device|cpu|disk}")
    p.add_argument("--max-memory", default=d.max_memory, help="per-device budget for --device-map, e.g. 0=20GiB,1=20GiB,cpu=60GiB")
    p.add_argument("--offload-folder", default=d.offload_folder, help="folder for weights --device-map puts on disk")
    p.add_argument("--truncate", action="store_true", help="keep the last tokens of prompts longer than the context (default: error)")
    p.add_argument("--skip-bridge-check", action="store_true",
                   help="load the model even if the TransformerLens bridge's logits differ from the plain model's "
                        "(checked on one prompt at load; the override is recorded in the report)")
    add_budget_options(p)


def add_intervention_args(p, required: bool = False) -> None:
    p.add_argument("--intervention", action="append", default=None, required=required, metavar="DIR",
                   help="a saved intervention or defense: a directory under a study's OUT/interventions/ (hsi, layer, "
                        "antidote, direction_ablation, sharpening, smoothllm, ...) or one Intervention.save wrote; repeat "
                        "for several")
    p.add_argument("--allow-other-model", action="store_true",
                   help="use an intervention made on another model of the same shape (recorded)")


def _phrases(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split takes three comma-separated fractions (train,val,test), got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--strengths takes comma-separated whole numbers, e.g. 1,2,4; got {text!r}") from None


def families_value(text: str) -> tuple[str, ...] | None:
    """--families: "all" -> None (every family), "none" -> (), else the names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("all",):
        return None
    if names in (("none",), ()):
        return ()
    from interp.jailbreaks import select_families

    select_families(names)  # an unknown name: one line listing the known ones
    return names


def add_study_options(p: argparse.ArgumentParser, out_default: str | None = None, out_required: bool = False,
                      out_help: str = "output directory", families_default: str = "all",
                      sections: tuple[str, ...] | None = None, reuse: bool = False) -> None:
    """The options every study command shares; defaults from `interp.study.StudyConfig` (the
    jailbreak families built from prompt files: all of them, except where `families_default` says
    otherwise: `safety-heads eval` scores only the files it is given)."""
    from interp.study import DEMO_SIZES, StudyConfig

    d = StudyConfig()
    add_model_args(p)
    g = p.add_argument_group("data (default: the embedded organism's prompts)")
    g.add_argument("--harmful", default=d.harmful, help="prompt file of harmful requests (AdvBench goal CSV, HarmBench, "
                   "JailbreakBench, XSTest, JSONL/CSV: see interp.datasets)")
    g.add_argument("--harmless", default=d.harmless, help="prompt file of harmless requests")
    g.add_argument("--jailbreak", default=d.jailbreak, help="prompt file of jailbreak prompts (optional family, strength and "
                   "request columns); default: built from the jailbreak families (interp.jailbreaks)")
    g.add_argument("--over-refusal", default=d.over_refusal, help="prompt file of harmless look-alikes (XSTest-style)")
    g.add_argument("--text-column", default=d.text_column, help="column holding the prompt text (default: the format's own)")
    g.add_argument("--category", default=d.category, help="keep only these comma-separated categories of the --harmful file "
                   "(HarmBench FunctionalCategory or SemanticCategory, JailbreakBench Category, a 'category' column)")
    g.add_argument("--max-per-label", type=int, default=d.max_per_label,
                   help="a seeded subsample of at most N plain prompts per label from the files (and N look-alikes); "
                        "every cap is said on stderr and recorded in the report's data section")
    g.add_argument("--families", default=families_default,
                   help="jailbreak families built from the prompt files when no --jailbreak file is given: all, none, or "
                        "comma-separated names (distractor, manyshot, topicmix, suffix, roleplay, refusal_suppression); "
                        f"default: {families_default}")
    g.add_argument("--strengths", type=_ints, default=d.strengths,
                   help="comma-separated strengths for every built family (default: each family's own)")
    g.add_argument("--system-prompt", default=d.system_prompt, help="system message put before every request")
    g = p.add_argument_group("judging")
    g.add_argument("--refusal-phrases", type=_phrases, default=d.refusal_phrases,
                   help='comma-separated openers of this model\'s refusals, e.g. "sorry,i cannot" (default: the model\'s '
                        "safety_heads.json, else common openers); also added to the refusal judge")
    g.add_argument("--compliance-phrases", type=_phrases, default=d.compliance_phrases,
                   help='comma-separated openers of its compliant answers, e.g. "certainly,sure"; the first is what '
                        "attacks aim for and Token Highlighter's affirmation")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                   help="greedy answer length the judge reads (default: what a refusal needs, "
                        f"{DEMO_SIZES['real']['max_new_tokens']} on a real model, {DEMO_SIZES['toy']['max_new_tokens']} "
                        "on the toy organisms: docs/judge.md)")
    g.add_argument("--labels", default=d.labels, choices=["behaviour", "category"],
                   help="probe labels: behaviour = refused/complied, judged on greedy answers (default); "
                        "category = harmful/harmless (for a model that refuses nothing)")
    g = p.add_argument_group("study")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--per-cell", type=int, default=d.per_cell,
                   help="held-out prompts per (label, family, strength); default: 20 on the toy organisms, 4 on a real "
                        "model (the demo's scale: about 7 minutes for SmolLM2-135M on 2 cores)")
    g.add_argument("--plain-per-label", type=int, default=d.plain_per_label,
                   help="organism providers: held-out plain requests per label (default: --per-cell when given, else "
                        f"{DEMO_SIZES['real']['plain_per_label']} on a real model, {DEMO_SIZES['toy']['plain_per_label']} on the toy organisms)")
    g.add_argument("--top-per-cell", type=int, default=d.top_per_cell,
                   help="organism providers: held-out harmful prompts at each jailbreak family's strongest strength "
                        f"(default: --per-cell when given, else {DEMO_SIZES['real']['top_per_cell']} on a real model)")
    g.add_argument("--n-train", type=int, default=d.n_train,
                   help="organism providers: plain prompts per label for fitting; default 64 on the toy organisms, 32 "
                        "on a real model")
    g.add_argument("--split", type=_fractions, default=d.fractions, help="prompt files: train,val,test fractions "
                   f"(default {','.join(map(str, d.fractions))})")
    g.add_argument("--out", default=out_default, required=out_required, help=out_help)
    g.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + chromium)")
    if sections is not None:
        g.add_argument("--sections", default=None,
                       help=f"comma-separated sections to run (default: {','.join(sections)}); every command takes the "
                            "demo's names: baseline,heads,directions,causal,steering,slipping,defenses,r2d")
    if reuse:
        add_reuse_options(p)


def add_reuse_options(p: argparse.ArgumentParser) -> None:
    """--from, --heads, --direction: runs that build on each other (interp.reuse)."""
    g = p.add_argument_group("building on an earlier run")
    g.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                   help="reuse what an earlier run (demo, steer, slipping, rank, causal) saved in DIR: the head ranking, "
                        "the refusal direction, the causal recommendation; checked against this model and data; only "
                        "what is missing is recomputed")
    g.add_argument("--heads", type=_heads, default=None, metavar="L.H,...",
                   help="the heads to steer and follow, named by hand, e.g. 21.4,27.0 (layer.head); the causal search is "
                        "then not run")
    g.add_argument("--direction", default=None, metavar="FILE",
                   help="the refusal direction, named by hand: an artifact this toolkit saved (e.g. "
                        "OUT/artifacts/direction.json) or a direction.pt in the refusal_direction layout")


def _heads(text: str):
    from interp.errors import InputError
    from interp.reuse import parse_heads

    try:
        return parse_heads(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_budget_options(p: argparse.ArgumentParser) -> None:
    """--batch-size and --pass-budget, the same on every command (interp.batching)."""
    g = p.add_argument_group("passes")
    g.add_argument("--batch-size", type=int, default=None,
                   help="at most this many prompts per forward pass (default 64; a pass also stays within --pass-budget)")
    g.add_argument("--pass-budget", type=_megabytes, default=None, metavar="MB",
                   help="activation memory one forward pass may take, in MB (default: 512 on a CPU; on CUDA a share of "
                        "the free device memory)")


def _megabytes(text: str) -> int:
    try:
        mb = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pass-budget takes a number of megabytes, e.g. 2048; got {text!r}") from None
    if not mb > 0:
        raise argparse.ArgumentTypeError(f"--pass-budget must be positive, got {text!r}")
    return int(mb * 2**20)


def study_config(args, **override):
    """A `StudyConfig` from parsed `add_study_options` arguments (plus `override`)."""
    from interp.study import StudyConfig

    kw = dict(model=args.model, device=args.device, dtype=args.dtype, chat_template=args.chat_template,
              truncate=args.truncate, skip_bridge_check=args.skip_bridge_check, device_map=args.device_map,
              max_memory=args.max_memory,
              offload_folder=args.offload_folder,
              harmful=args.harmful, harmless=args.harmless, jailbreak=args.jailbreak, over_refusal=args.over_refusal,
              text_column=args.text_column, system_prompt=args.system_prompt, refusal_phrases=args.refusal_phrases,
              compliance_phrases=args.compliance_phrases, labels=args.labels, seed=args.seed, per_cell=args.per_cell,
              n_train=args.n_train, plain_per_label=args.plain_per_label, top_per_cell=args.top_per_cell,
              fractions=tuple(args.split), png=args.png, category=args.category,
              max_per_label=args.max_per_label, families=families_value(args.families), strengths=args.strengths,
              max_new_tokens=args.max_new_tokens)
    if args.out is not None:
        kw["out"] = args.out
    for name in ("from_dir", "heads", "direction", "batch_size", "pass_budget"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if getattr(args, "sections", None):
        override = {k: v for k, v in override.items() if k != "sections"}
        kw["sections"] = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    kw.update(override)
    return StudyConfig(**kw)


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
    from interp.sources import model_sources

    for source in model_sources():
        if source.commands is not None:
            source.commands(sub)
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
    finally:
        from interp.batching import configure_passes

        configure_passes()  # --batch-size / --pass-budget end with the command
    if isinstance(result, dict):
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
