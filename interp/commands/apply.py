"""`safety-heads apply --intervention DIR [--intervention DIR2 ...] --prompts FILE --out D`:
generate under saved interventions (a study's `OUT/interventions/<name>/`, or any directory
`Intervention.save` wrote) and defenses, write every answer to `D/completions.jsonl` and print the
behaviour table of each.

Each --intervention is one condition; several are generated together, the batch tiled once per
intervention in one pass (`interp.runner.run` over `Intervention.stack`), unless `--combine` applies
them all at once as one condition. `--baseline` adds the unmodified model. Without --prompts, the
prompts the study measured the first intervention on (its `prompts.jsonl`); without
--max-new-tokens and --refusal-phrases, the answer length and judge the study used (its
`card.json`): the report's numbers come back exactly.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import _phrases, add_intervention_args, add_model_args

    p = sub.add_parser("apply", help="generate under saved interventions (OUT/interventions/<name>) and write "
                                     "completions.jsonl and the behaviour table")
    add_model_args(p)
    p.set_defaults(model=None)  # default: the model the first intervention was made on (its card)
    add_intervention_args(p, required=True)
    p.add_argument("--prompts", default=None, help="prompt file (any format of interp.datasets); default: the prompts "
                   "the study measured the first --intervention on (its prompts.jsonl)")
    p.add_argument("--label", default=None, help="label for a prompt file without one (harmful/harmless)")
    p.add_argument("--text-column", default=None, help="column holding the prompt text (default: the format's own)")
    p.add_argument("--out", required=True, help="directory for completions.jsonl and table.json")
    p.add_argument("--baseline", action="store_true", help="also generate with no intervention (condition 'baseline')")
    p.add_argument("--combine", action="store_true", help="apply every --intervention at once, as one condition")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="greedy answer length (default: the one the study used, from the intervention's card)")
    p.add_argument("--refusal-phrases", type=_phrases, default=None,
                   help="comma-separated refusal phrases added to JailbreakBench's (default: the study's judge, from the card)")
    p.add_argument("--compliance-phrases", type=_phrases, default=None, help="openers of compliant answers (as on every command)")
    p.set_defaults(func=_apply)


def judging(args, conditions, model):
    """(judge, max_new_tokens): the options', else the first card's, else the model's defaults."""
    from interp.completions import judge_from_header
    from interp.study import StudyConfig, demo_sizes, make_judge

    card = next((c.card for c in conditions if c.card), {})
    if args.refusal_phrases is not None or "judge" not in card:
        judge = make_judge(StudyConfig(refusal_phrases=args.refusal_phrases))
    else:
        judge = judge_from_header(card)
    n = args.max_new_tokens or card.get("max_new_tokens") or demo_sizes(model)["max_new_tokens"]
    return judge, int(n)


def _apply(args) -> dict:
    from interp.commands.core import load_from_args
    from interp.progress import say
    from interp.saved import load_condition, load_conditions
    from interp.study import StudyConfig
    from interp.completions import judge_header, write_completions
    from interp.datasets import load_prompt_file
    from interp.errors import InputError
    from interp.estimate import announce
    from interp.generation import GenerationConfig
    from interp.under import generate_under, summarise
    from interp.threads import model_threads

    if args.model is None:
        made_on = next((load_condition(d).card.get("model") for d in args.intervention), None)
        args.model = made_on or StudyConfig().model
        say(f"--model not given: the model the intervention was made on, {args.model}")
    model = load_from_args(args)
    conditions = load_conditions(args.intervention, model, args.allow_other_model)
    prompts_path = args.prompts or next((str(c.prompts_file()) for c in conditions if c.prompts_file()), None)
    if prompts_path is None:
        raise InputError("--prompts is needed: the interventions given carry no prompts.jsonl of their own")
    prompts = load_prompt_file(prompts_path, label=args.label, text_column=args.text_column)
    judge, n_new = judging(args, conditions, model)
    gen = GenerationConfig(max_new_tokens=n_new, batch_size=args.batch_size or 64)
    announce(model, prompts, f"generation under {len(conditions) + args.baseline} condition(s)", new_tokens=n_new)
    with model_threads(model):
        rows = generate_under(model, prompts, conditions, judge, gen, baseline=args.baseline, combine=args.combine)
    out = Path(args.out)
    header = {"command": "apply", "model": model.name, "fingerprint": model.fingerprint, "judge": judge_header(judge),
              "max_new_tokens": n_new, "prompts": str(prompts_path), "interventions": [str(c.path) for c in conditions]}
    path = write_completions(out / "completions.jsonl", rows, header)
    table = {"model": model.name, "prompts": str(prompts_path), "n_prompts": len(prompts), "max_new_tokens": n_new,
             "judge": judge.describe(), "conditions": summarise(rows, conditions), "completions": str(path)}
    (out / "table.json").write_text(json.dumps(table, indent=1, default=str))
    return table
