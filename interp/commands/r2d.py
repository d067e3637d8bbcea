"""`safety-heads r2d train --model M --harmful F --harmless F [--jailbreak F] --out DIR`: Reasoning-
to-Defend on the user's own model and prompts (`interp.r2d.train`); `--model r2d:DIR` loads the
result. The `r2d` command's other subcommands come from model sources (the organisms add `eval`,
and `r2d train` without --model trains the word-level R2D organism): `r2d_subcommands(sub)` is
where they find the command."""

from __future__ import annotations


def r2d_subcommands(sub):
    """The `r2d` command's subparsers (made on first use)."""
    if "r2d" not in sub.choices:
        p = sub.add_parser("r2d", help="Reasoning-to-Defend: train it on your model (train --model M), evaluate the organisms")
        p.r2d_subcommands = p.add_subparsers(dest="r2d_command", required=True)
    return sub.choices["r2d"].r2d_subcommands


def register(sub) -> None:
    t = r2d_subcommands(sub).add_parser(
        "train", help="train R2D (pivot tokens, teacher traces, LoRA + CPO) on a chat model; deterministic for a seed")
    t.add_argument("--model", default=None, help="base chat model (Llama-style): hub registry name or local directory; "
                   "without it, the word-level R2D organism is trained")
    t.add_argument("--harmful", default=None, help="prompt file of harmful requests (refused after [UNSAFE])")
    t.add_argument("--harmless", default=None, help="prompt file of harmless requests (the base model's own answer after [SAFE])")
    t.add_argument("--jailbreak", default=None, help="optional jailbreak file (family, strength, request columns): "
                   "a [RETHINK] step, then refused")
    t.add_argument("--cpo-weight", type=float, default=1.0, help="weight of the CPO term; 0 = SFT on the traces only")
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's, 200 with --model)")
    t.add_argument("--batch-size", type=int, default=None, help="with --model: sequences per step (default 8)")
    t.add_argument("--lr", type=float, default=None, help="with --model: AdamW learning rate (default 1.5e-3)")
    t.add_argument("--answer-tokens", type=int, default=None, help="with --model: length of the base model's own "
                   "answers after [SAFE] (default 48)")
    t.add_argument("--bf16", action="store_true", help="with --model: bfloat16 matmuls on the CPU (faster where it has "
                   "bf16 units; the adapter stays float32)")
    t.add_argument("--threads", type=int, default=None, help="with --model: torch threads (default 1); the adapter is "
                   "bit-identical only at the same seed and thread count")
    t.add_argument("--refusal", default=None, help="with --model: the final answer the teacher writes after [UNSAFE] "
                   "(default: \"I'm sorry, but I can't help with that.\")")
    t.add_argument("--refusal-phrases", default=None, help="with --model: comma-separated refusal openers of this model "
                   "(only for a vocabulary without the common ones); recorded for r2d:DIR")
    t.add_argument("--compliance-phrases", default=None, help="with --model: comma-separated compliance openers, as above")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="directory for the adapter, pivot rows and recipe.json (load with --model r2d:DIR)")
    t.set_defaults(func=_train)


def _train(args) -> dict:
    from dataclasses import replace

    from interp.errors import InputError

    if args.model is None:
        if any(getattr(args, k) is not None for k in ("harmful", "harmless", "jailbreak")):
            raise InputError("r2d train: prompt files need --model (the chat model to train R2D on)")
        toy = getattr(args, "organism_train", None)
        if toy is None:
            raise InputError("r2d train needs --model (the chat model to train R2D on)")
        return toy(args)
    if args.harmful is None or args.harmless is None:
        raise InputError("r2d train --model needs --harmful FILE and --harmless FILE (and optionally --jailbreak FILE)")
    from interp.datasets import load_prompt_file
    from interp.r2d.train import R2DTrainConfig, train_r2d

    files = {k: v for k, v in (("harmful", args.harmful), ("harmless", args.harmless), ("jailbreak", args.jailbreak)) if v}
    prompts = None
    for role, f in files.items():
        s = load_prompt_file(f, fallback_label="harmless" if role == "harmless" else "harmful")
        prompts = s if prompts is None else prompts.concat(s)
    from interp.r2d.teacher import TeacherConfig

    cfg = R2DTrainConfig(cpo_weight=args.cpo_weight, bf16_autocast=args.bf16,
                         teacher=TeacherConfig(**({"refusal": args.refusal} if args.refusal else {})))
    phrases = {k: [x.strip() for x in v.split(",") if x.strip()] for k in ("refusal_phrases", "compliance_phrases")
               if (v := getattr(args, k)) is not None}
    over = {k: getattr(args, k) for k in ("steps", "batch_size", "threads", "answer_tokens", "lr") if getattr(args, k) is not None}
    recipe = train_r2d(args.model, prompts, args.out, replace(cfg, **over), seed=args.seed, files=files, phrases=phrases)
    return {"out": args.out, "load_with": f"--model r2d:{args.out}", "base": recipe["base"],
            "fingerprints": recipe["fingerprints"], "counts": recipe["data"]["counts"],
            "final_lm_loss": recipe["final_lm_loss"], "final_cpo_loss": recipe["final_cpo_loss"],
            "seconds": recipe["seconds"]}
