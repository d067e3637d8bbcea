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
    """Per prompt and head, the two sums over positions that first-order estimates of replacing a
    head's output (`hook_z`) by a position-independent value v need:
    m(v) - m ~ sum_pos g . (v - z) = g_sum . v - g_dot_z."""

    g_sum: Float[Tensor, "prompt layer head d_head"]  # sum over positions of dm/dz
    g_dot_z: Float[Tensor, "prompt layer head"]  # sum over positions of dm/dz . z
    metric: Float[Tensor, "prompt"]  # the unablated metric per prompt
    z_last: Float[Tensor, "prompt layer head d_head"] | None = None  # each head's output at the last token

    def ablation_estimate(self, values: Float[Tensor, "layer head d_head"] | None = None) -> Float[Tensor, "prompt layer head"]:
        """Estimated change of the metric per prompt when each head alone is replaced by `values`
        (None: zero)."""
        if values is None:
            return -self.g_dot_z
        return einops.einsum(self.g_sum, values.float().to(self.g_sum.device), "b l h e, l h e -> b l h") - self.g_dot_z

    def rows(self, idx: Sequence[int]) -> "HeadGradients":
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        return HeadGradients(self.g_sum[idx], self.g_dot_z[idx], self.metric[idx],
                             None if self.z_last is None else self.z_last[idx])


def head_gradients(model: ChatModel, prompts, metric: Metric | None = None, batch_size: int = 8,
                   hooks: Sequence[FwdHook] = ()) -> HeadGradients:
    """`HeadGradients` of every prompt (rows in the caller's order), metric default: refusal score;
    `hooks` (e.g. heads already ablated) stay installed during the pass."""
    metric = metric or refusal_score_metric(model)
    names = [act_name("z", l) for l in range(model.n_layers)]
    n = len(texts(prompts))
    g_sum = torch.zeros(n, model.n_layers, model.n_heads, model.d_head)
    g_dot_z = torch.zeros(n, model.n_layers, model.n_heads)
    z_last = torch.zeros(n, model.n_layers, model.n_heads, model.d_head)
    values = torch.zeros(n)

    def reduce(name, z, g):  # [batch, pos, head, d_head] -> the two sums over positions, and the last token
        g = g.float()
        return g.sum(1).cpu(), einops.einsum(g, z.float(), "b p h e, b p h e -> b h").cpu(), z[:, -1].float().cpu()

    for idx, b in batches(model, prompts, batch_size):
        red, m = attribute(model, b, names, metric, reduce, hooks)
        rows = torch.tensor(idx)
        for l, name in enumerate(names):
            g_sum[rows, l], g_dot_z[rows, l], z_last[rows, l] = red[name]
        values[rows] = m.float().cpu()
    return HeadGradients(g_sum, g_dot_z, values, z_last)


def progress_bar(total: int, label: str | None, unit: str = "candidate", file=None):
    """A tqdm bar (done / total candidates, rate, time left) when `label` is given and the output
    (stderr by default) is a terminal; one line per step when it is not (`interp.progress`)."""
    from interp.progress import progress_bar as bar

    return bar(total, label, unit, file)
