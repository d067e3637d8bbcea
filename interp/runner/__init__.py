"""The one place the model's forward pass runs: `forward` (one pass, the decisions every pass shares)
and `run` (a batch under an intervention or a stack of them, tiled, chunked to the row budget,
optionally resumed at a block from cached block inputs).

Decisions made here once:
* positions: `position_ids` follow the attention mask (the first real token is position 0, pads
  sit at 0), passed whenever the model takes them; a model that derives positions itself (from the
  mask, as OPT, or not at all, as ALiBi models) is left to it. So a left-padded prompt sees the
  positions it sees alone, also with learned absolute positions (GPT-2).
* logits: only the positions read are unembedded (`logits_to_keep`; by default the last).
* a stack of k interventions over n prompts tiles the batch k times, row r taking intervention
  r // n; replicas are chunked so that a pass stays within `interp.batching.rows_per_pass`.
* resuming at block l re-runs blocks l..L-1 from the block inputs a clean run cached, with every
  per-row tensor the model built for the blocks (masks, rotary tables, ALiBi biases of
  [batch * heads, ...]) tiled like the residual stream.
"""

from interp.runner.blocks import BlockInputs, cache_block_inputs, resume_logits, tile
from interp.runner.forward import forward, last_logits, position_ids, takes_position_ids
from interp.runner.stacked import RESUME_PROMPTS, PassRead, prompt_batches, run

__all__ = ["run", "RESUME_PROMPTS", "forward", "last_logits", "position_ids", "takes_position_ids", "PassRead", "BlockInputs",
           "cache_block_inputs", "resume_logits", "tile", "prompt_batches"]
