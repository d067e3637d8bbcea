"""Causal analysis of attention heads: which heads drive refusal, and which to steer.

* `ablation`: zero-, mean- and resample-ablation of head sets (`ablate_heads`, usable during
  generation), behaviour under ablation (`measure_ablation`), greedy search for the smallest set
  that flips behaviour in either direction (`search_heads`).
* `patching`: activation patching of every head and of `resid_pre` between paired harmful and
  harmless prompts (`activation_patching`; `equal_length_pairs` pairs up any prompt sets).
* `dla`: direct logit attribution through the frozen final norm, and the logit lens.
* `compare`: the methods side by side (`compare_methods`) and `recommend_heads`.
* `report` / `cli`: the pipeline stage "causal" (`causal_stage`) and `safety-heads causal`.
"""

from interp.causal.ablation import (HeadReference, HeadSearch, SearchConfig, ablate_heads, ablation_refusals,
                                    ablation_scores, evaluate_sets, head_reference, measure_ablation,
                                    measure_head_sets, search_heads)
from interp.causal.compare import (Comparison, Recommendation, RecommendConfig, compare_maps, compare_methods,
                                   recommend_heads, spearman)
from interp.causal.dla import DLA, direct_logit_attribution, logit_lens, refusal_logit_diff, unembed_direction
from interp.causal.heads import Head, check_heads
from interp.causal.patching import (Patching, activation_patching, check_pairs, equal_length_pairs, patch_heads,
                                    patch_resid)

__all__ = [
    "HeadReference", "HeadSearch", "SearchConfig", "ablate_heads", "ablation_refusals", "ablation_scores",
    "evaluate_sets", "head_reference", "measure_ablation", "measure_head_sets", "search_heads",
    "Comparison", "Recommendation", "RecommendConfig", "compare_maps", "compare_methods", "recommend_heads", "spearman",
    "DLA", "direct_logit_attribution", "logit_lens", "refusal_logit_diff", "unembed_direction",
    "Head", "check_heads",
    "Patching", "activation_patching", "check_pairs", "equal_length_pairs", "patch_heads", "patch_resid",
]
