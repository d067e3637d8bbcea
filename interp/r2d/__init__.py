"""Reasoning-to-Defend (R2D) on the model organism: reasoning traces closed by pivot tokens
([SAFE] / [UNSAFE] / [RETHINK]), SFT + Contrastive Pivot Optimisation, side-by-side evaluation
against the base organism, and the pivot decision as a probing target. See docs/r2d.md.

Modules: `data` (trace format, teacher rules, reading traces back), `model` (`load_r2d`,
`require_kind`, pivot tokens), `loss` (CPO), `evaluate` (`evaluate_models`), `inside`
(`compare_decisions`), `report` (pipeline stage "r2d"), `cli` (`safety-heads r2d ...`). The R2D
organism itself (tokenizer, training data, `train_r2d_organism`) is built in `organisms.r2d`;
everything here takes its prompts as data.

R2D on any Llama-style chat model (`safety-heads r2d train --model M`, docs/r2d.md): `pivots` (the
pivot tokens and their embedding rows), `teacher` (rule-based English traces), `train` (`train_r2d`:
LoRA + pivot rows, LM + CPO), `adapter` (the saved directory, `load_r2d_hf`) and `source` (the
`r2d:DIR` model source).
"""

from interp.r2d.model import load_base, load_r2d, require_kind

__all__ = ["load_base", "load_r2d", "require_kind"]
