"""Attention slipping: trace where the response's attention goes as a jailbreak strengthens, and
defend with attention sharpening, against SmoothLLM and Token Highlighter (docs/slipping.md).

    from interp.slipping import trace_attention, family_series
    from interp.intervention import Intervention
    tr = trace_attention(model, prompts)                      # [batch, step, layer, head, span]
    s = family_series(model, eval_set, "distractor")          # per strength + refusal, correlations
    with Intervention.sharpen(temperature=0.5).apply(model):  # softmax temperature 0.5 everywhere
        answers = generate(model, prompts)

The pipeline stages live in `interp.stages.slipping` (called by `interp.pipeline`, not imported here).
"""

from interp.slipping.attack import AttackConfig, AttackResult, guided_attack, random_attack, run_attacks, topic_words
from interp.slipping.defense_eval import DefenseTable, defense_figure, evaluate_defenses, subsample
from interp.slipping.defenses import NoDefense, Sharpening, SmoothLLM, TokenHighlighter, perturb, token_influence
from interp.slipping.series import SlippingSeries, attack_series, family_series, series_from_trace, slipping_series
from interp.slipping.trace import SPANS, SlippingTrace, TraceConfig, token_attention, trace_attention

__all__ = [
    "SPANS", "TraceConfig", "SlippingTrace", "trace_attention", "token_attention",
    "SlippingSeries", "slipping_series", "family_series", "series_from_trace", "attack_series",
    "AttackConfig", "AttackResult", "guided_attack", "random_attack", "run_attacks", "topic_words",
    "NoDefense", "Sharpening", "SmoothLLM", "TokenHighlighter", "perturb", "token_influence",
    "evaluate_defenses", "subsample", "DefenseTable", "defense_figure",
]
