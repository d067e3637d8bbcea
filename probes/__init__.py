"""Probing: rank attention heads and residual-stream directions by how well they separate refusal
from compliance (or harmful from harmless prompts).

- `rank_heads` / `rank_heads_from_activations`: per-head L2 logistic probes (k-fold, every head in
  one batched fit) and mass-mean directions on hook_z -> `HeadRanking`.
- `find_refusal_direction`: difference in means of resid_pre per layer and post-instruction
  position, selected by Arditi et al.'s ablation / addition / KL rule -> `interp.direction.Direction`.
- `behaviour_labels` / `category_labels`: refused vs complied (judged greedy answers) or harmful
  vs harmless.
"""

from probes.artifacts import HeadRanking
from probes.directions import SelectionConfig, find_refusal_direction
from probes.heads import rank_heads, rank_heads_from_activations
from probes.labels import Labels, behaviour_labels, category_labels
from probes.logistic import LogisticConfig, fit_logistic
from probes.run import ProbeResult, run_probes

__all__ = [
    "rank_heads", "rank_heads_from_activations", "find_refusal_direction", "HeadRanking", "Labels",
    "behaviour_labels", "category_labels", "SelectionConfig", "LogisticConfig", "fit_logistic", "run_probes", "ProbeResult",
]
