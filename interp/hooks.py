"""Installing hooks so that they never leak, and the checks interventions share.

Every change to the model goes through `hooked` (interventions: `interp.intervention.Intervention`,
whose `apply` uses it): the hooks exist only inside the `with` block and are removed on exit, also
when the block raises.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import act_name
from interp.model import ChatModel

FwdHook = tuple[str, Callable]

# descriptions of the interventions installed right now (innermost last), named in NonFiniteError
ACTIVE_INTERVENTIONS: list[str] = []


def validate_hook_names(model: ChatModel, names: Sequence[str]) -> None:
    known = model.bridge.hook_dict
    for n in names:
        if n not in known:
            near = [k for k in known if k.split(".")[-1] == n.split(".")[-1]][:3]
            raise InputError(f"hook {n!r} does not exist on {model.name}" + (f"; similar: {near}" if near else "")
                             + "; hook names look like 'blocks.{layer}.attn.hook_z' or 'blocks.{layer}.hook_resid_post'")


@contextmanager
def hooked(model: ChatModel, fwd_hooks: Sequence[FwdHook], label: str | None = None,
           guard: bool = False) -> Iterator[ChatModel]:
    """Install forward hooks for the duration of the block (validated names, always removed).
    `label` names the intervention (and its strength) in errors raised while it is active;
    `guard=True` adds `overflow_guards` (for interventions that add vectors of a chosen size)."""
    validate_hook_names(model, [n for n, _ in fwd_hooks])
    names = sorted({n for n, _ in fwd_hooks})
    ACTIVE_INTERVENTIONS.append(label or f"hooks on {', '.join(names[:3])}" + (f" (+{len(names) - 3} more)" if len(names) > 3 else ""))
    guards = overflow_guards(model) if guard else []
    try:
        with model.bridge.hooks(fwd_hooks=list(fwd_hooks) + guards):
            yield model
    finally:
        ACTIVE_INTERVENTIONS.pop()


def overflow_guards(model: ChatModel) -> list[FwdHook]:
    """Hooks on every block's output that raise `NonFiniteError` when the residual stream holds
    NaN/inf or values whose squares overflow float32. The next RMS/LayerNorm would otherwise turn
    an absurd steering strength into all-equal logits (empty answers, no error)."""

    def make(name: str):
        def guard(act, hook):
            if not bool(torch.isfinite(act.float().square().sum(-1)).all()):
                check_finite(torch.full((1,), float("inf")), f"activations at {name} (or their squares, which the "
                             "next normalisation needs)")
            return None
        return guard

    return [(act_name("resid_post", l), make(act_name("resid_post", l))) for l in range(model.n_layers)]


def describe_active() -> str | None:
    """The interventions active now, for error messages (None: the unmodified model)."""
    return " + ".join(ACTIVE_INTERVENTIONS) if ACTIVE_INTERVENTIONS else None


def check_finite(values: Tensor, what: str, rows: Sequence[int] | None = None) -> Tensor:
    """Raise `NonFiniteError` naming the active intervention when `values` hold NaN or inf.
    `rows`: the caller's prompt index of each row of `values`."""
    bad = ~torch.isfinite(values)
    if not bool(bad.any()):
        return values
    from interp.errors import NonFiniteError

    active = describe_active()
    where = (f"under {active}: the intervention is too strong for this model; lower its strength" if active else
             "from the unmodified model: check the dtype (float16 overflows; use float32 or bfloat16) and the weights")
    if rows is None:
        raise NonFiniteError(f"{what} are not finite (NaN or inf) {where}")
    bad_rows = bad.reshape(bad.shape[0], -1).any(-1).nonzero().flatten().tolist()
    who = sorted(rows[r] for r in bad_rows)
    raise NonFiniteError(f"{what} of prompt(s) {who[:8]}{'...' if len(who) > 8 else ''} are not finite (NaN or inf) {where}")


def count_hooks(model: ChatModel) -> int:
    """Number of hook functions attached anywhere on the model (0 on a clean model). The bridge's
    own permanent hooks (OPT's bridge wires its MLP hook points so) are part of the model, not counted."""
    seen, n = set(), 0
    for hp in model.bridge.hook_dict.values():
        if id(hp) in seen:
            continue
        seen.add(id(hp))
        handles = [*getattr(hp, "fwd_hooks", []), *getattr(hp, "bwd_hooks", [])]
        n += sum(1 for h in handles if not getattr(h, "is_permanent", False))
    return n


def check_direction(model: ChatModel, direction: Tensor, what: str = "direction") -> Float[Tensor, "d_model"]:
    """A finite vector of the residual width, on the model's device and dtype."""
    if not isinstance(direction, Tensor):
        direction = torch.as_tensor(direction)
    if direction.ndim != 1 or direction.shape[0] != model.d_model:
        raise InputError(f"{what} has shape {tuple(direction.shape)}, but {model.name} has a residual width of "
                         f"{model.d_model}; was it made on another model?")
    if not torch.isfinite(direction).all():
        raise InputError(f"{what} contains NaN or inf")
    if direction.norm() == 0:
        raise InputError(f"{what} is the zero vector")
    return direction.to(model.device, model.dtype)


def check_layer(model: ChatModel, layer: int) -> int:
    if not isinstance(layer, int) or not 0 <= layer < model.n_layers:
        raise InputError(f"layer {layer} does not exist: {model.name} has layers 0..{model.n_layers - 1}")
    return layer


def check_alpha(alpha: float, what: str = "alpha") -> float:
    alpha = float(alpha)
    if alpha != alpha or alpha in (float("inf"), float("-inf")):
        raise InputError(f"{what} must be a finite number, got {alpha}")
    return alpha
