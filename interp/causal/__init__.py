"""Causal analysis of attention heads: which heads drive refusal, and which to steer.

* `ablate`: the reference values of zero-, mean- and resample-ablation (`head_reference`); the
  ablation itself is `interp.intervention.Intervention.ablate_heads(heads, method, reference)`.
* `runner`: behaviour under ablation of many head sets at once (`measure_ablation`,
  `ablation_scores`, `ablation_refusals`).
* `search`: greedy search for the smallest set that flips behaviour in either direction
  (`search_heads`).
* `patching`: activation patching of every head and of `resid_pre` between paired harmful and
  harmless prompts (`activation_patching`; `equal_length_pairs` pairs up any prompt sets).
* `dla`: direct logit attribution through the frozen final norm, and the logit lens.
* `compare`: the methods side by side (`compare_methods`) and `recommend_heads`.
* `report` / `cli`: the pipeline stage "causal" (`causal_stage`) and `safety-heads causal`.
"""

from interp.causal.ablate import HeadReference, head_reference, resolve_reference
from interp.causal.runner import ablation_refusals, ablation_scores, evaluate_sets, measure_ablation, measure_head_sets
from interp.causal.search import HeadSearch, SearchConfig, search_heads, single_head_ablation_effects
from interp.causal.compare import (Comparison, Recommendation, RecommendConfig, compare_maps, compare_methods,
                                   recommend_heads, spearman)
from interp.causal.dla import DLA, direct_logit_attribution, logit_lens, refusal_logit_diff, unembed_direction
from interp.causal.heads import Head, check_heads
from interp.causal.patching import (Patching, activation_patching, check_pairs, equal_length_pairs, patch_heads,
                                    patch_resid)

__all__ = [
    "HeadReference", "head_reference", "resolve_reference",
    "ablation_refusals", "ablation_scores", "evaluate_sets", "measure_ablation", "measure_head_sets",
    "HeadSearch", "SearchConfig", "search_heads", "single_head_ablation_effects",
    "Comparison", "Recommendation", "RecommendConfig", "compare_maps", "compare_methods", "recommend_heads", "spearman",
    "DLA", "direct_logit_attribution", "logit_lens", "refusal_logit_diff", "unembed_direction",
    "Head", "check_heads",
    "Patching", "activation_patching", "check_pairs", "equal_length_pairs", "patch_heads", "patch_resid",
]
