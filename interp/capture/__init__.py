"""Activation capture at chosen sites and positions: the toolkit's one read path.

* `sites`: where an activation lives (`Site`, `parse_sites`, `SITE_HOOKS`) and which positions a
  read keeps (`parse_positions`, `resolve_positions`);
* `reducers`: what a read keeps of each hooked activation (`KeepPositions`, the default;
  `LastPosition`; `SpanSum` / `SpanMean`; `AttentionMass`; `AllPositions`);
* `reads`: `capture`, `capture_hooks` (any hook by name), `capture_with_answers` (one pass with a
  greedy generation); only its `_read` runs the model with hooks that store activations;
* `activations`: the result, `Activations`, saved and loaded (a file pair or a shard directory);
* `shards`: `capture_to_disk`, for sets too large for memory (resumable, checked shards).

Everything is importable from here: `from interp.capture import capture, Activations, ...`.
"""

from interp.capture.activations import MANIFEST, Activations
from interp.capture.reducers import (AllPositions, AttentionMass, KeepPositions, LastPosition, Reducer, SpanMean,
                                     SpanSum)
from interp.capture.reads import capture, capture_hooks, capture_with_answers
from interp.capture.shards import capture_to_disk
from interp.capture.sites import (POSITION_NAMES, SITE_HOOKS, Positions, Site, parse_positions, parse_sites,
                                  resolve_positions)

__all__ = [
    "MANIFEST", "Activations", "AllPositions", "AttentionMass", "KeepPositions", "LastPosition", "Reducer", "SpanMean",
    "SpanSum", "capture", "capture_hooks", "capture_with_answers", "capture_to_disk", "POSITION_NAMES", "SITE_HOOKS",
    "Positions", "Site", "parse_positions", "parse_sites", "resolve_positions",
]
