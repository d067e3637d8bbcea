"""A direction ablation baked into the weights: Arditi et al.'s weight orthogonalization.

Directional ablation (`Intervention.ablate_direction`) projects the unit direction r out of every
block input and every attention and MLP output. The same model without hooks: remove r from
everything that writes to the residual stream, W <- W - r r^T W for each output projection (the
attention output and the MLP down projection of every block, with their biases), and from every
row of the token (and learned position) embeddings. No write then has a component along r, so the
residual stream never does, and every block sees what it sees under the hooks: the logits agree
to float rounding (tests/test_export.py checks 1e-4 on the organism and SmolLM2).

Weight layouts handled: Llama-style (llama, mistral, qwen2, qwen3: `nn.Linear` `o_proj` and
`down_proj`) and GPT-2 (`Conv1D` `c_proj`, stored transposed; learned position embeddings). A
model with tied input and output embeddings gets its own copy of the output matrix, unchanged. Any
other architecture is refused by name: a norm after an output projection (Gemma 2/3) would put r
back, so orthogonalizing its weights would not be the hook ablation.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel

# per layout: the embedding keys, and the residual writers (regex over the clean state-dict keys)
LAYOUTS = {
    "llama": {"embeddings": ("model.embed_tokens.weight",),
              "writers": r"model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)", "conv1d": False},
    "gpt2": {"embeddings": ("transformer.wte.weight", "transformer.wpe.weight"),
             "writers": r"transformer\.h\.\d+\.(attn|mlp)\.c_proj\.(weight|bias)", "conv1d": True},
}
MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "gpt2": "gpt2"}
OUTPUT_EMBEDDINGS = {"llama": "lm_head.weight", "gpt2": "lm_head.weight"}
EXPORT_FILE = "safety_heads_export.json"


def layout_of(model: ChatModel) -> str:
    """The weight layout of `model`, or an error naming its architecture."""
    cfg = model.bridge.original_model.config
    mtype = getattr(cfg, "model_type", None)
    if mtype not in MODEL_TYPES:
        arch = ", ".join(getattr(cfg, "architectures", None) or [type(model.bridge.original_model).__name__])
        raise InputError(f"export: {mtype!r} models ({arch}) are not supported; weight orthogonalization is implemented "
                         f"for {', '.join(sorted(MODEL_TYPES))} weight layouts. Use hook-based directional ablation "
                         "(Intervention.ablate_direction) on this model instead")
    return MODEL_TYPES[mtype]


def clean_state_dict(model: ChatModel) -> dict[str, Tensor]:
    """The Hugging Face state dict of the model inside the bridge, under its own key names (the
    bridge wraps each module in place; its aliases of the same tensors are dropped)."""
    from transformers import AutoModelForCausalLM

    hf = model.bridge.original_model
    with torch.device("meta"):
        expected = AutoModelForCausalLM.from_config(_untied(hf.config)).state_dict().keys()
    raw = {re.sub(r"\._original_component", "", k): v for k, v in hf.state_dict().items()}
    missing = [k for k in expected if k not in raw and k not in OUTPUT_EMBEDDINGS.values()]
    if missing:
        raise InputError(f"export: the model in the bridge lacks {len(missing)} weights its config expects (e.g. "
                         f"{missing[0]}); load it with load_model or ChatModel.from_hf before exporting")
    return {k: raw[k].detach().clone() for k in expected if k in raw}


def orthogonalize(state: dict[str, Tensor], direction: Float[Tensor, "d_model"], layout: str,
                  n_layers: int) -> dict[str, Tensor]:
    """`state` with the unit `direction` projected out of every embedding row and every residual
    write (see the module docstring); the output embedding is untied and left as it was."""
    spec = LAYOUTS[layout]
    r = direction.detach().to(torch.float64)
    r = r / r.norm()
    out = dict(state)
    out_emb = OUTPUT_EMBEDDINGS[layout]
    if out_emb not in out:  # tied: the output matrix is the input one, before it is edited
        out[out_emb] = state[spec["embeddings"][0]].clone()
    for key in spec["embeddings"]:
        if key in out:
            out[key] = _remove(out[key], r, rows=True)
    writers = [k for k in out if re.fullmatch(spec["writers"], k)]
    n_weights = sum(k.endswith(".weight") for k in writers)
    if n_weights != 2 * n_layers:
        raise InputError(f"export: found {n_weights} residual-writing matrices, expected 2 per block for {n_layers} "
                         "blocks; the weight layout is not the one expected for this architecture")
    for key in writers:
        w = out[key]
        if key.endswith(".bias"):
            out[key] = _remove(w, r, rows=True)
        else:  # nn.Linear stores [d_model, d_in] (rows: output); Conv1D stores [d_in, d_model]
            out[key] = _remove(w, r, rows=spec["conv1d"]) if spec["conv1d"] else _remove(w.T, r, rows=True).T.contiguous()
    return out


def _remove(w: Tensor, r: Tensor, rows: bool) -> Tensor:
    """Each row (the last axis) of `w` minus its component along unit `r`, in float64, cast back."""
    w64 = w.to(torch.float64)
    return (w64 - torch.outer(w64 @ r, r) if w64.ndim == 2 else w64 - (w64 @ r) * r).to(w.dtype)


def _untied(config):
    cfg = copy.deepcopy(config)
    cfg.tie_word_embeddings = False
    if hasattr(cfg, "get_text_config"):
        cfg.get_text_config().tie_word_embeddings = False
    cfg.output_attentions = False  # the bridge asks for attention weights; a plain model should not
    return cfg


def export_orthogonalized(model: ChatModel, direction, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a Hugging Face model directory (config, safetensors weights, tokenizer with its chat
    template) whose weights have `direction` (a `Direction` or a tensor of the residual width)
    projected out. Loaded with plain transformers it computes what `model` computes under
    `Intervention.ablate_direction(direction)`. Also writes `safety_heads.json` (the model's refusal
    and compliance phrases, so `load_model(out)` judges like the original) and a record of the
    export (`safety_heads_export.json`: source model fingerprint, direction, layout)."""
    from transformers import AutoModelForCausalLM

    from interp.intervention import direction_parts

    layout = layout_of(model)
    vec, layer, made_on = direction_parts(direction)
    if vec.shape[0] != model.d_model:
        raise InputError(f"export: the direction has {vec.shape[0]} dimensions, {model.name} a residual width of "
                         f"{model.d_model}; it was made on another model")
    if not torch.isfinite(vec).all() or float(vec.norm()) == 0.0:
        raise InputError("export: the direction is zero or not finite")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"export: {out} exists and is not empty; pass a new directory")
    state = orthogonalize(clean_state_dict(model), vec, layout, model.n_layers)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    cfg = _untied(model.bridge.original_model.config)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(cfg)
    fresh.load_state_dict({k: v.cpu() for k, v in state.items()}, strict=False, assign=True)
    out.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out, state_dict={k: v.cpu().contiguous() for k, v in state.items()})
    model.tokenizer.save_pretrained(out)
    meta = {k: v for k, v in model.meta.items() if k not in ("placement", "device_map")}
    meta.update(refusal_phrases=list(model.refusal_phrases), compliance_phrases=list(model.compliance_phrases))
    (out / "safety_heads.json").write_text(json.dumps(meta, indent=1))
    (out / EXPORT_FILE).write_text(json.dumps({
        "method": "weight orthogonalization (directional ablation in the weights)", "source_model": model.name,
        "source_fingerprint": model.fingerprint, "layout": layout, "direction_layer": layer, "direction_made_on": made_on,
        "direction_norm": float(vec.norm()), "direction_unit": (vec / vec.norm()).tolist()}, indent=1))
    return out
