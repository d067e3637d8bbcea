"""One value for every change the toolkit makes to a model: an `Intervention` is a tuple of typed
operations, each a small frozen dataclass that states its own fields (pyvene's one class per
intervention), applied in order.

    iv = Intervention.steer_heads(head_dirs, heads, sigmas=0.5)      # or .ablate_direction(d), .sharpen(0.5), ...
    with iv.apply(model):                                           # hooks exist only inside the block
        ...
    both = iv + Intervention.ablate_direction(d)                    # applies both (in this order)
    stronger = iv.with_strength(1.0)                                # a new value; nothing is mutated
    iv.save("out/hsi"); Intervention.load("out/hsi")                # intervention.json + intervention.safetensors
    Intervention.stack([iv_0, iv_1, ...])                           # one batched pass: row r takes iv_(r // n)

Operations: `SteerHeads` (sigmas), `SteerResidual` (sigmas), `AddToResidual` (factor),
`ShiftResidual` (norm_fraction), `ProjectOut`, `AblateHeads`, `Patch`, `ScaleHeads` (factor),
`ScaleActivation` (factor), `SharpenAttention` (temperature), `WeighTokens`. The strength of each
is named after its unit; operations without one have no `with_strength`. Each keeps the arithmetic
its method always used, so results do not change with this representation. Runs under a stack go
through `interp.runner.run`.
"""

from interp.intervention.activations import Patch, ScaleActivation, SharpenAttention, WeighTokens
from interp.intervention.checks import (ABLATE_METHODS, ADDITION_SITES, HEAD_AXIS, PROJECTION_SITES, check_heads,
                                        check_temperature, direction_parts, made_on_of)
from interp.intervention.core import Intervention, Stack
from interp.intervention.heads import AblateHeads, ScaleHeads, SteerHeads
from interp.intervention.op import OP_CLASSES, Op, Strength, register
from interp.intervention.residual import AddToResidual, ProjectOut, ShiftResidual, SteerResidual

__all__ = ["Intervention", "Stack", "Op", "Strength", "register", "OP_CLASSES", "SteerHeads", "AblateHeads",
           "ScaleHeads", "SteerResidual", "AddToResidual", "ShiftResidual", "ProjectOut", "Patch", "ScaleActivation",
           "SharpenAttention", "WeighTokens", "check_heads", "check_temperature", "direction_parts", "made_on_of",
           "ABLATE_METHODS", "ADDITION_SITES", "HEAD_AXIS", "PROJECTION_SITES"]
