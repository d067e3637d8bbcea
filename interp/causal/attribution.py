"""Attribution patching: a first-order estimate of every intervention's effect from one forward and
one backward pass.

For a metric m (the refusal score at the last position) and an activation a that an intervention
replaces by a', m(a') - m(a) ~ (a' - a) . dm/da (Nanda 2023, "Attribution patching: activation
patching at industrial scale"; Syed, Rager & Conmy 2023). The gradient at every hook point comes
from one backward pass, so every head, every residual position and every candidate direction gets
an estimate for the price of about three forward passes (a backward pass costs about two).
Kramar et al. 2024 (AtP*) measure where the estimate fails: saturated attention softmaxes and
cancelling paths give false negatives, and they verify the estimate's best candidates with exact
patching. The toolkit does the same: the estimate only chooses which few candidates to measure
exactly (`top_k`, default 8, in `SearchConfig`, `SelectionConfig` and `activation_patching`), it
is never the final number of a chosen head or direction, and how well it ranked against the exact
values is reported wherever both exist (`--exhaustive` computes both for every candidate).

Saturation is what the greedy head search meets: on the organism, the first-order effect of
ablating one of the harm-detecting heads of block 0 is a tenth of the exact one, because the
heads are redundant and the refusal readout saturates. The search therefore estimates again at
every step around the run with the heads chosen so far ablated, where the remaining heads' effects
are no longer masked (`interp.causal.search`).

Gradients are taken with respect to what each hook passes on (a new autograd node per hook), so
they follow exactly the paths an intervention at that hook changes: `blocks.l.hook_resid_mid` is
the input of the pre-MLP norm, and replacing it moves the MLP's input, not the skip connection.
Parameters are frozen during the pass (no weight gradients, and no activations kept for them).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import EMBED, act_name
from interp.hooks import FwdHook, hooked
from interp.model import ChatModel, EncodedBatch, texts
from interp.scoring import refusal_log_odds
from interp.runner import last_logits, prompt_batches
from interp.causal.ablate import WINDOW, position_slots

# the leaf of the backward pass: every hook an intervention touches lies downstream of it
LEAF_HOOK = EMBED


@contextmanager
def frozen_parameters(model: ChatModel) -> Iterator[ChatModel]:
    """requires_grad off for every parameter inside the block, restored on exit (also on error)."""
    params = [p for p in model.bridge.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


Metric = Callable[[Float[Tensor, "batch d_vocab"]], Float[Tensor, "batch"]]
Reduce = Callable[[str, Tensor, Tensor], object]


def refusal_score_metric(model: ChatModel) -> Metric:
    return lambda logits: refusal_log_odds(model, logits)


def attribute(model: ChatModel, batch: EncodedBatch, names: Sequence[str], metric: Metric, reduce: Reduce,
              hooks: Sequence[FwdHook] = ()) -> tuple[dict[str, object], Float[Tensor, "batch"]]:
    """One forward and one backward pass of `metric` (per row, summed: rows are independent, so
    each row's gradient is its own) on `batch`. For every hook name, `reduce(name, activation,
    gradient)` turns the pair into what the caller keeps (so full activations need not outlive
    the pass). `hooks`: interventions in place during the pass (installed before the recording
    hooks, so a hook point records what the intervention passes on); the estimate is then taken
    around the intervened run. Returns the reductions and the metric per row."""
    if not names:
        raise InputError("attribute needs at least one hook name")
    acts: dict[str, Tensor] = {}

    def leaf(x, hook):
        return x.detach().requires_grad_(True)

    def record(name):
        def hook(x, hook):
            y = x.view_as(x)  # a node of its own: its gradient covers only what reads the hook's output
            acts[name] = y
            return y
        return hook

    hooks = [(LEAF_HOOK, leaf)] + list(hooks) + [(n, record(n)) for n in names]
    with frozen_parameters(model), torch.enable_grad(), hooked(model, hooks):
        m = metric(last_logits(model, batch))
        missing = [n for n in names if n not in acts]
        if missing:
            raise InputError(f"hooks {missing[:3]} did not fire on {model.name}; they cannot be attributed")
        grads = torch.autograd.grad(m.sum(), [acts[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads):
        a = acts[n].detach()
        out[n] = reduce(n, a, torch.zeros_like(a) if g is None else g.detach())  # unused: no path to the metric
    return out, m.detach()


def batches(model: ChatModel, prompts, batch_size: int = 8) -> Iterator[tuple[list[int], EncodedBatch]]:
    """(indices in the caller's order, encoded batch) for forward+backward passes: prompts sorted by
    length to limit padding, at most `batch_size` per batch and fewer when what the backward pass
    keeps would exceed the activation budget (`interp.batching.rows_per_pass`)."""
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("no prompts given: attribution needs at least one prompt")
    for idx, b, _ in prompt_batches(model, prompt_texts, batch_size, grad=True):
        yield idx, b


# ------------------------------------------------------------------ heads
@dataclass(frozen=True)
class HeadGradients:
    """Per prompt and head, the sums over positions that first-order estimates of replacing a
    head's output (`hook_z`) by a value v need: m(v) - m ~ sum_pos g . (v - z) = g_sum . v - g_dot_z
    for a position-independent v; for a per-position v (slots from the end, `interp.causal.ablate`)
    the gradient summed per slot, `g_slot`, replaces `g_sum`. `z_slot` holds each prompt's own
    per-position values (the per-position reference of these prompts)."""

    g_sum: Float[Tensor, "prompt layer head d_head"]  # sum over positions of dm/dz
    g_dot_z: Float[Tensor, "prompt layer head"]  # sum over positions of dm/dz . z
    metric: Float[Tensor, "prompt"]  # the unablated metric per prompt
    z_last: Float[Tensor, "prompt layer head d_head"] | None = None  # each head's output at the last token
    g_slot: Float[Tensor, "prompt slot layer head d_head"] | None = None  # dm/dz summed per position slot
    z_slot: Float[Tensor, "prompt slot layer head d_head"] | None = None  # z per position slot (mean before the window)

    def ablation_estimate(self, values: Tensor | None = None) -> Float[Tensor, "prompt layer head"]:
        """Estimated change of the metric per prompt when each head alone is replaced by `values`
        ([layer, head, d_head] at every position, [slot, layer, head, d_head] per position; None: zero)."""
        if values is None:
            return -self.g_dot_z
        if values.ndim == 4:
            if self.g_slot is None or self.g_slot.shape[1] != values.shape[0]:
                raise InputError("per-position values need the gradients summed over the same position slots: "
                                 "call head_gradients with window = the reference's window")
            return einops.einsum(self.g_slot, values.float().to(self.g_slot.device),
                                 "b s l h e, s l h e -> b l h") - self.g_dot_z
        return einops.einsum(self.g_sum, values.float().to(self.g_sum.device), "b l h e, l h e -> b l h") - self.g_dot_z

    def rows(self, idx: Sequence[int]) -> "HeadGradients":
        idx = torch.as_tensor(list(idx), dtype=torch.long)

        def take(x):
            return None if x is None else x[idx]

        return HeadGradients(self.g_sum[idx], self.g_dot_z[idx], self.metric[idx], take(self.z_last), take(self.g_slot),
                             take(self.z_slot))


def head_gradients(model: ChatModel, prompts, metric: Metric | None = None, batch_size: int = 8,
                   hooks: Sequence[FwdHook] = (), window: int | None = WINDOW) -> HeadGradients:
    """`HeadGradients` of every prompt (rows in the caller's order), metric default: refusal score;
    `hooks` (e.g. heads already ablated) stay installed during the pass; `window`: position slots
    kept for per-position estimates (None: none)."""
    metric = metric or refusal_score_metric(model)
    names = [act_name("z", l) for l in range(model.n_layers)]
    n = len(texts(prompts))
    g_sum = torch.zeros(n, model.n_layers, model.n_heads, model.d_head)
    g_dot_z = torch.zeros(n, model.n_layers, model.n_heads)
    z_last = torch.zeros(n, model.n_layers, model.n_heads, model.d_head)
    values = torch.zeros(n)
    S = None if window is None else window + 1
    g_slot = None if S is None else torch.zeros(n, S, model.n_layers, model.n_heads, model.d_head)
    z_slot = None if S is None else torch.zeros(n, S, model.n_layers, model.n_heads, model.d_head)

    for idx, b in batches(model, prompts, batch_size):
        mask = b.attention_mask.to(model.device)

        def reduce(name, z, g):  # [batch, pos, head, d_head] -> sums over positions, the last token, the slots
            g, z = g.float(), z.float()
            out = (g.sum(1).cpu(), einops.einsum(g, z, "b p h e, b p h e -> b h").cpu(), z[:, -1].cpu())
            if S is None:
                return out
            return out + (position_slots(g, mask, window, mean=False).cpu(), position_slots(z, mask, window).cpu())

        red, m = attribute(model, b, names, metric, reduce, hooks)
        rows = torch.tensor(idx)
        for l, name in enumerate(names):
            g_sum[rows, l], g_dot_z[rows, l], z_last[rows, l] = red[name][:3]
            if S is not None:
                g_slot[rows, :, l], z_slot[rows, :, l] = red[name][3:]
        values[rows] = m.float().cpu()
    return HeadGradients(g_sum, g_dot_z, values, z_last, g_slot, z_slot)


def progress_bar(total: int, label: str | None, unit: str = "candidate", file=None):
    """A tqdm bar (done / total candidates, rate, time left) when `label` is given and the output
    (stderr by default) is a terminal; one line per step when it is not (`interp.progress`)."""
    from interp.progress import progress_bar as bar

    return bar(total, label, unit, file)
