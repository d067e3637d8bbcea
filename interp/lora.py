"""Low-rank adapters (LoRA, Hu et al. 2021) written for this project: attach, save, merge.

A frozen linear layer W gets a trainable update (alpha / r) * B A, A of shape [r, in] (small random
init), B of shape [out, r] (zero init, so training starts from the base model). Only A and B are
shipped. Merging computes W + (alpha / r) * B A in float64, one rank-1 term after another in a
fixed order, and rounds once to the weight's dtype: every element is computed the same way on any
machine and thread count, so the merged weights and their fingerprint are deterministic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.errors import ArtifactError, InputError

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, scale and where the adapters go (module names inside each decoder layer's self_attn)."""

    rank: int = 8
    alpha: float = 16.0  # scale alpha / rank = 2, a power of two: scaling is exact in any float format
    targets: tuple[str, ...] = ATTENTION_TARGETS
    layers: tuple[int, ...] | None = None  # None: every layer
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise InputError(f"LoRA rank must be at least 1, got {self.rank}")
        bad = [t for t in self.targets if t not in ATTENTION_TARGETS]
        if bad or not self.targets:
            raise InputError(f"LoRA targets must be a non-empty subset of {ATTENTION_TARGETS}, got {self.targets}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """`base(x) + scale * (x A^T) B^T`, with `base` frozen."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, generator: torch.Generator, init_std: float):
        super().__init__()
        self.base = base
        self.scale = scale
        a = torch.randn(rank, base.in_features, generator=generator) * init_std
        self.A = nn.Parameter(a.to(base.weight.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return self.base(x) + self.scale * ((x @ self.A.T) @ self.B.T)


def module_names(n_layers: int, cfg: LoRAConfig) -> list[str]:
    """Dotted names (as in the Hugging Face state dict, without `.weight`) of the adapted linears."""
    layers = range(n_layers) if cfg.layers is None else cfg.layers
    return [f"model.layers.{i}.self_attn.{t}" for i in layers for t in cfg.targets]


def attach(model: nn.Module, cfg: LoRAConfig, seed: int) -> dict[str, LoRALinear]:
    """Freeze `model` and wrap the target linears with adapters (initialised from `seed`, in name order)."""
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, LoRALinear] = {}
    n_layers = model.config.num_hidden_layers
    for name in module_names(n_layers, cfg):
        parent_name, attr = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        base = getattr(parent, attr)
        if not isinstance(base, nn.Linear):
            raise InputError(f"{name} is a {type(base).__name__}, not a linear layer: cannot attach LoRA there")
        wrapped = LoRALinear(base, cfg.rank, cfg.scale, gen, cfg.init_std)
        setattr(parent, attr, wrapped)
        out[name] = wrapped
    return out


def adapter_tensors(adapters: dict[str, LoRALinear]) -> dict[str, Tensor]:
    """`{name.lora_A: A, name.lora_B: B}`, float32, detached: what is saved."""
    out = {}
    for name, mod in adapters.items():
        out[f"{name}.lora_A"] = mod.A.detach().float().contiguous().clone()
        out[f"{name}.lora_B"] = mod.B.detach().float().contiguous().clone()
    return out


def delta(A: Float[Tensor, "r d_in"], B: Float[Tensor, "d_out r"], scale: float) -> Float[Tensor, "d_out d_in"]:
    """scale * B A in float64, summed over the rank in a fixed order (no matmul: its reduction order
    depends on the thread count and the BLAS build)."""
    A64, B64 = A.double(), B.double()
    acc = torch.zeros(B.shape[0], A.shape[1], dtype=torch.float64)
    for k in range(A.shape[0]):
        acc += B64[:, k, None] * A64[None, k, :]
    return acc * scale


def merge_state(state: dict[str, Tensor], tensors: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """Merged copies of the adapted weights: `{name.weight: W + delta}` (W's dtype), from a base state dict."""
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    out = {}
    for name in names:
        key = f"{name}.weight"
        if key not in state:
            raise ArtifactError(f"adapter names {name}, which the base model does not have; is it an adapter for this model?")
        A, B = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
        if A is None or B is None:
            raise ArtifactError(f"adapter for {name} lacks lora_A or lora_B")
        W = state[key]
        if B.shape[0] != W.shape[0] or A.shape[1] != W.shape[1] or A.shape[0] != B.shape[1]:
            raise ArtifactError(f"adapter shapes for {name} (A {tuple(A.shape)}, B {tuple(B.shape)}) do not fit "
                                f"the base weight {tuple(W.shape)}")
        out[key] = (W.double() + delta(A, B, scale)).to(W.dtype)
    return out


def merge_into(model: nn.Module, tensors: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """Write merged weights into a plain (adapter-free) model in place; returns them."""
    params = dict(model.named_parameters())
    state = {k: params[k].detach() for k in {f"{n.rsplit('.', 1)[0]}.weight" for n in tensors} if k in params}
    merged = merge_state(state, tensors, scale)
    with torch.no_grad():
        for key, w in merged.items():
            params[key].copy_(w)
    return merged


def fingerprint(tensors: dict[str, Tensor]) -> str:
    """sha256 (16 hex digits) of tensors' names, shapes, dtypes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
