import pytest

from interp.errors import InputError
from interp.hooknames import HOOK_TEMPLATES, act_name, parse_act_name


def test_act_name_round_trips_every_kind():
    for kind in HOOK_TEMPLATES:
        assert parse_act_name(act_name(kind, 7)) == (kind, 7)
    assert act_name("z", 3) == "blocks.3.attn.hook_z"
    assert act_name("resid_pre", 0) == "blocks.0.hook_resid_pre"


def test_act_name_rejects_unknown_kinds_and_layers():
    with pytest.raises(InputError, match="unknown activation kind"):
        act_name("hook_z", 0)
    with pytest.raises(InputError, match="non-negative"):
        act_name("z", -1)
    with pytest.raises(InputError, match="not a per-block hook name"):
        parse_act_name("hook_embed")


def test_act_names_exist_on_a_model():
    from interp.model import load_model

    m = load_model("organism")
    for kind in HOOK_TEMPLATES:
        assert act_name(kind, m.n_layers - 1) in m.bridge.hook_dict, kind
