"""Foundation subcommands: demo, eval, capture (the organisms add `organism train/eval`: organisms.cli)."""

from __future__ import annotations

from pathlib import Path


DEMO_SECTIONS = ("baseline", "heads", "directions", "causal", "steering", "slipping", "defenses", "r2d")


def register(sub) -> None:
    from interp.cli import _phrases, add_intervention_args, add_model_args, add_study_options

    p = sub.add_parser("demo", help="run the whole study on a model and write report.json and figures")
    add_study_options(p, out_default="out/demo", sections=DEMO_SECTIONS, reuse=True)
    p.set_defaults(func=_demo)

    e = sub.add_parser("eval", help="behaviour table (refusal rate and score on harmful, harmless, jailbreak and "
                                    "over-refusal prompts) as JSON on stdout")
    add_study_options(e, out_help="also write the table here (a .json file, or a directory for eval.json), and every "
                                  "answer beside it (X.completions.jsonl, or DIR/completions.jsonl)",
                      families_default="none")
    e.add_argument("--completions", default=None, help="write every answer (JSON lines) to this file; "
                   "`safety-heads judge --completions FILE` re-judges it")
    add_intervention_args(e)
    e.set_defaults(func=_eval)

    c = sub.add_parser("capture", help="capture activations to safetensors shards")
    add_model_args(c)
    c.add_argument("--prompts", required=True, help="prompt file (see interp.datasets for formats)")
    c.add_argument("--label", default=None, help="label for files without one (harmful/harmless)")
    c.add_argument("--sites", default="z", help="comma-separated: z,resid_pre,resid_mid,resid_post,attn_out,mlp_out")
    c.add_argument("--positions", default="last", help="last | post_instruction | comma-separated indices")
    c.add_argument("--out", required=True)
    c.add_argument("--shard-size", type=int, default=256)
    c.add_argument("--overwrite", action="store_true", help="discard a previous capture in --out instead of resuming it")
    # a capture reads no refusal score, but loading builds the token sets: a vocabulary without the
    # common openers needs its own (as on every study command)
    c.add_argument("--refusal-phrases", type=_phrases, default=None, help="openers of this model's refusals, if its "
                   "vocabulary lacks the common ones (see `safety-heads eval --help`)")
    c.add_argument("--compliance-phrases", type=_phrases, default=None, help="openers of its compliant answers, likewise")
    c.set_defaults(func=_capture)


def load_from_args(args):
    import torch

    from interp.model import load_model
    from interp.placement import Placement

    from interp.batching import configure_passes

    placement = Placement.from_args(getattr(args, "device_map", None), getattr(args, "max_memory", None),
                                    getattr(args, "offload_folder", None))
    model = load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype), chat_template=args.chat_template,
                      truncate=getattr(args, "truncate", False), placement=placement,
                      refusal_phrases=getattr(args, "refusal_phrases", None),
                      compliance_phrases=getattr(args, "compliance_phrases", None),
                      skip_bridge_check=getattr(args, "skip_bridge_check", False))
    configure_passes(model.device, getattr(args, "batch_size", None), getattr(args, "pass_budget", None))
    return model


def _demo(args):
    from interp.cli import study_config
    from interp.pipeline import run_demo

    cfg = study_config(args)
    from interp.progress import say

    report = run_demo(cfg)  # progress and this line on stderr: stdout is the JSON below
    say(f"wrote {Path(cfg.out) / 'report.json'} in {report['timings']['total']:.1f}s; read {Path(cfg.out) / 'summary.md'} first")
    return {"out": str(cfg.out), "summary": str(Path(cfg.out) / "summary.md"),
            "baseline": report.get("baseline", {}).get("refusal_rate")}


def _eval(args):
    """The behaviour table on every prompt of the study (nothing is fitted, so nothing is held out),
    every rate as {"rate", "n", "ci95"}; every answer to completions.jsonl (see `_completions_path`)."""
    import json

    from interp.cli import study_config
    from interp.completions import behaviour_table, judge_header, write_completions
    from interp.distributed import process_group
    from interp.pipeline import evaluation_completions, open_study
    from interp.threads import model_threads

    # nothing is fitted, so every split is evaluated: its jailbreak cells keep up to --per-cell
    # prompts too, not the few the fitting splits keep (a user's file would lose rows)
    per_cell = args.per_cell if args.per_cell is not None else 20  # every row of a file, not the demo's scale
    cfg = study_config(args, per_cell=per_cell, fit_per_cell=per_cell)
    done = _completions_path(args)  # checked before any generation
    with process_group() as w:  # under torchrun every rank takes its share of the batches
        study = open_study(cfg)
        with model_threads(study.model):  # a small model runs on one thread, as in every study stage
            rows, under = _eval_rows(args, study, w)
        data = study.data.describe(ids=False)
        table = {"model": study.model.name, **behaviour_table(rows, seed=study.seed), "judge": study.judge.describe(),
                 "max_new_tokens": study.gen.max_new_tokens, "data": data, **under}
    if not w.is_main:
        return None  # rank 0 prints and writes the table
    if done is not None:
        header = {"command": "eval", "model": study.model.name, "fingerprint": study.model.fingerprint,
                  "judge": judge_header(study.judge), "seed": study.seed, "max_new_tokens": study.gen.max_new_tokens,
                  "data": data, **({"intervention": table["intervention"]} if "intervention" in table else {})}
        table["completions"] = str(write_completions(done, rows, header))
    if args.out:
        out = Path(args.out)
        if out.suffix != ".json":
            out.mkdir(parents=True, exist_ok=True)
            out = out / "eval.json"
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=1, default=str))
    return table


def _eval_rows(args, study, world) -> tuple[list, dict]:
    """eval's answers: on the unmodified model, or under the --intervention directories (applied
    together, as one condition named by them; a saved defense answers through its own `respond`)."""
    from dataclasses import replace

    from interp.pipeline import evaluation_completions
    from interp.saved import load_conditions

    conditions = load_conditions(args.intervention, study.model, args.allow_other_model)
    if not conditions:
        return evaluation_completions(study, world=world), {}
    from interp.intervention import Intervention

    name = "+".join(c.name for c in conditions)
    ivs = [c.intervention for c in conditions if c.intervention is not None]
    defenses = [c for c in conditions if c.defense is not None]
    under = {"intervention": {c.name: {"path": str(c.path), **{k: c.card[k] for k in ("method", "strength", "unit")
                                                              if k in c.card}} for c in conditions}}
    if defenses:
        from interp.errors import InputError
        from interp.under import generate_under

        if ivs or len(defenses) > 1:
            raise InputError("eval takes one saved defense (smoothllm, token_highlighter) or saved interventions, not "
                             "both; compare them side by side with safety-heads apply")
        d = study.data
        prompts = d.train.concat(d.val).concat(d.test, name="all")
        rows = generate_under(study.model, prompts, defenses, study.judge, study.gen)
        return [replace(r, set="all") for r in rows], under
    total = Intervention.none()
    for iv in ivs:
        total = total + iv
    with total.apply(study.model):
        rows = evaluation_completions(study, world=world)
    return [replace(r, condition=name) for r in rows], under


def _completions_path(args) -> Path | None:
    """Where eval writes its answers: --completions FILE; else beside the table (DIR/completions.jsonl
    for --out DIR, X.completions.jsonl for --out X.json); nowhere without either."""
    from interp.errors import InputError

    if args.completions:
        if Path(args.completions).is_dir():
            raise InputError(f"--completions {args.completions} is a directory; pass a file, e.g. "
                             f"{Path(args.completions) / 'completions.jsonl'}")
        return Path(args.completions)
    if not args.out:
        return None
    out = Path(args.out)
    return out.with_suffix(".completions.jsonl") if out.suffix == ".json" else out / "completions.jsonl"


def _capture(args):
    from interp.capture import capture_to_disk
    from interp.datasets import load_prompt_file

    from interp.distributed import process_group

    prompts = load_prompt_file(args.prompts, label=args.label)
    with process_group() as world:  # a world of one unless started by torchrun
        args.device = world.device(args.device)
        model = load_from_args(args)
        if world.is_main:
            from interp.estimate import announce

            announce(model, prompts, "capture")
        out = capture_to_disk(model, prompts, args.out, sites=args.sites.split(","), positions=args.positions,
                              shard_size=args.shard_size, overwrite=args.overwrite, world=world)
    if not world.is_main:
        return None  # one process reports
    return {"out": str(out), "n_prompts": len(prompts), "processes": world.size}
