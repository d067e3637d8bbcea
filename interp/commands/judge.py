"""`safety-heads judge --completions FILE`: re-judge saved answers and print `eval`'s table.

Nothing is generated: the answers of a completions file (`safety-heads eval --out DIR` writes
DIR/completions.jsonl) are judged again, by the file's own judge (its header records every phrase)
or by JailbreakBench's phrases plus `--refusal-phrases`, the way `eval` builds its judge. With the
file's judge the table equals `eval`'s to the last digit; with another one it says how the rates
move, and how many verdicts changed.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import _phrases

    p = sub.add_parser("judge", help="re-judge a completions file (written by eval) and print eval's behaviour table")
    p.add_argument("--completions", required=True, help="a completions.jsonl file (safety-heads eval --out DIR writes one)")
    p.add_argument("--refusal-phrases", type=_phrases, default=None,
                   help="comma-separated refusal phrases added to JailbreakBench's, as eval does (default: the file's own "
                        "judge, every phrase of it)")
    p.add_argument("--min-words", type=int, default=None,
                   help="answers with fewer words count as refusals (default: the file's judge's; 0 turns the rule off)")
    p.add_argument("--out", default=None, help="also write the table to this JSON file")
    p.set_defaults(func=_judge)


def _judge(args):
    from dataclasses import replace

    from interp.completions import judge_from_header, read_completions, rejudge, tables
    from interp.errors import InputError
    from interp.study import StudyConfig, make_judge

    header, rows = read_completions(args.completions)
    if not rows:
        raise InputError(f"{args.completions} holds no answers, only its header; rerun the command that wrote it")
    judge = judge_from_header(header) if args.refusal_phrases is None else make_judge(StudyConfig(refusal_phrases=args.refusal_phrases))
    if args.min_words is not None:
        judge = replace(judge, min_words=args.min_words)
    new = rejudge(rows, judge)
    table = {"model": header.get("model"), **tables(new, seed=int(header.get("seed", 0))), "judge": judge.describe(),
             "max_new_tokens": header.get("max_new_tokens"), "data": header.get("data"), "completions": str(args.completions),
             "verdicts_changed": sum(a.refused != b.refused for a, b in zip(rows, new))}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=1, default=str))
    return table
