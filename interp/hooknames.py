"""One name for every place the toolkit reads or changes the model: `act_name("z", 3)` is
`"blocks.3.attn.hook_z"`, as TransformerLens's `get_act_name`. Nothing else spells hook names.

Kinds are named after what the hook holds: the residual stream before, between and after a
block's attention and MLP, the attention and MLP outputs, the per-head query/key/value/mix (`q`,
`k`, `v`, `z`), the attention scores before the softmax (`attn_scores`) and the pattern after it.
"""

from __future__ import annotations

from interp.errors import InputError

HOOK_TEMPLATES = {
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "resid_post": "blocks.{l}.hook_resid_post",
    "attn_out": "blocks.{l}.hook_attn_out",
    "mlp_out": "blocks.{l}.hook_mlp_out",
    "q": "blocks.{l}.attn.hook_q",
    "k": "blocks.{l}.attn.hook_k",
    "v": "blocks.{l}.attn.hook_v",
    "z": "blocks.{l}.attn.hook_z",
    "attn_scores": "blocks.{l}.attn.hook_attn_scores",
    "pattern": "blocks.{l}.attn.hook_pattern",
}
# kinds that carry a head axis ("batch pos head d_head" or "batch head q_pos k_pos")
HEAD_KINDS = ("q", "k", "v", "z", "attn_scores", "pattern")


def act_name(kind: str, layer: int) -> str:
    """The hook name of `kind` (a key of HOOK_TEMPLATES) at block `layer`."""
    if kind not in HOOK_TEMPLATES:
        raise InputError(f"unknown activation kind {kind!r}; known: {sorted(HOOK_TEMPLATES)}")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise InputError(f"layer must be a non-negative integer, got {layer!r}")
    return HOOK_TEMPLATES[kind].format(l=layer)


def parse_act_name(name: str) -> tuple[str, int]:
    """(kind, layer) of a hook name made by `act_name`; an InputError for anything else."""
    for kind, tpl in HOOK_TEMPLATES.items():
        head, tail = tpl.split("{l}")
        if name.startswith(head) and name.endswith(tail):
            mid = name[len(head):len(name) - len(tail)]
            if mid.isdigit():
                return kind, int(mid)
    raise InputError(f"{name!r} is not a per-block hook name; names look like 'blocks.3.attn.hook_z'")


# hooks outside the blocks
EMBED = "hook_embed"  # token embeddings (the leaf of attribution's backward pass)
FINAL_NORM_IN = "ln_final.hook_in"  # the last residual, before the final norm
FINAL_NORM_OUT = "ln_final.hook_out"
LOGITS = "unembed.hook_out"


# ------------------------------------------------------------------ the sites a loaded model has
# Residual kinds in the order they occur in a block. A parallel block (GPT-NeoX/Pythia, GPT-J,
# Phi-1/2, CodeGen, Cohere, Falcon) feeds attention and MLP the same normalised block input and adds
# both outputs at once: there is no stream between them, so no resid_mid.
RESID_KINDS = ("resid_pre", "resid_mid", "resid_post")


def site_kinds(model) -> tuple[str, ...]:
    """The kinds of `HOOK_TEMPLATES` that `model` (a ChatModel) has at every block, in table order."""
    names = set(model.bridge.hook_dict)
    return tuple(k for k in HOOK_TEMPLATES if all(act_name(k, l) in names for l in range(model.n_layers)))


def missing_reason(model, kind: str) -> str:
    """Why `model` lacks the site `kind`, in a few words (for errors and reports)."""
    if kind == "resid_mid" and {"resid_pre", "resid_post"} <= set(site_kinds(model)):
        return "its blocks run attention and MLP in parallel on the block input, so there is no stream between them"
    return "the bridge exposes no such hook on its blocks"


def require_site_kinds(model, kinds, where: str = "", among=None) -> tuple[str, ...]:
    """`kinds` when `model` has every one of them, else a one-line InputError naming the sites it has
    (those of them in `among`: the kinds the caller accepts)."""
    have = tuple(k for k in site_kinds(model) if among is None or k in among)
    kinds = tuple(kinds)
    missing = [k for k in kinds if k in HOOK_TEMPLATES and k not in have]
    if missing:
        raise InputError(f"{where + ': ' if where else ''}{model.name} has no {', '.join(missing)} site "
                         f"({missing_reason(model, missing[0])}); its sites are {', '.join(have)}")
    return kinds


def present_site_kinds(model, kinds) -> tuple[tuple[str, ...], dict[str, str]]:
    """The `kinds` that `model` has, and {absent kind: why} for the others: default searches keep
    what exists and report what they left out."""
    have = site_kinds(model)
    return tuple(k for k in kinds if k in have), {k: missing_reason(model, k) for k in kinds if k not in have}


def stream_after_attention(model) -> str:
    """The residual site where a block's head outputs have just been added: `resid_mid`, or on a
    parallel block (no resid_mid) `resid_post`, where they arrive together with the MLP's output."""
    return "resid_mid" if "resid_mid" in site_kinds(model) else "resid_post"
