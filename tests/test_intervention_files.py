"""Saved interventions: files of the first format (version 1, written by the toolkit before the
typed operations: tests/data/intervention_v1/make_fixture.py) load as operation classes and change
the organism exactly as they did; the current format round-trips every operation class."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from interp.errors import ArtifactError
from interp.hooks import count_hooks
from interp.intervention import (AblateHeads, AddToResidual, Intervention, Patch, ProjectOut, ScaleHeads, SharpenAttention,
                                 ShiftResidual, SteerHeads, SteerResidual, WeighTokens)

V1 = Path(__file__).resolve().parent / "data" / "intervention_v1"
KINDS = {"steer_heads": SteerHeads, "layer_heads": SteerHeads, "layer_resid": SteerResidual, "add_direction": AddToResidual,
         "ablate_direction": ProjectOut, "antidote": ShiftResidual, "sharpen": SharpenAttention,
         "sharpen_pairs": SharpenAttention, "zero_heads": AblateHeads, "mean_heads": AblateHeads,
         "resample_heads": AblateHeads, "scale": ScaleHeads, "patch": Patch, "weigh_tokens": WeighTokens}


@pytest.fixture(scope="module")
def expected(organism):
    with safe_open(str(V1 / "expected_logits.safetensors"), "pt") as f:
        if f.metadata()["model_fingerprint"] != organism.fingerprint:
            pytest.fail("the organism changed since tests/data/intervention_v1 was written; rewrite it with "
                        "make_fixture.py under the version-1 writer")
        return {k: f.get_tensor(k) for k in f.keys()}


def test_version_1_files_load_and_act_as_they_did(organism, expected):
    tokens, mask = expected["tokens"], expected["attention_mask"]
    for name, cls in {**KINDS, "composite": None}.items():
        iv = Intervention.load(V1 / name)
        if cls is not None:
            assert len(iv) == 1 and isinstance(iv.ops[0], cls), name
        with torch.no_grad(), iv.apply(organism):
            got = organism.bridge(tokens, attention_mask=mask)[:, -1]
        assert torch.allclose(got, expected[name], atol=1e-5), name
        assert count_hooks(organism) == 0
    composite = Intervention.load(V1 / "composite")
    assert [type(o) for o in composite] == [SteerHeads, ProjectOut, SharpenAttention]
    # strengths come back under their units
    assert Intervention.load(V1 / "steer_heads").strength == 1.5 and Intervention.load(V1 / "antidote").unit == "norm_fraction"
    assert Intervention.load(V1 / "sharpen").strength == 0.5
    assert Intervention.load(V1 / "add_direction").ops[0].made_on["model_fingerprint"] == organism.fingerprint


def test_current_files_round_trip_every_operation(organism, expected, tmp_path):
    for name in KINDS:
        iv = Intervention.load(V1 / name)
        iv.save(tmp_path / name, model=organism)
        again = Intervention.load(tmp_path / name)
        assert again == iv and [type(o) for o in again] == [type(o) for o in iv], name
    meta = (tmp_path / "steer_heads" / "intervention.json").read_text()
    assert '"version": 2' in meta and '"SteerHeads"' in meta and '"sigmas": 1.5' in meta
    bad = tmp_path / "steer_heads" / "intervention.json"
    bad.write_text(meta.replace('"SteerHeads"', '"RotateHeads"'))
    with pytest.raises(ArtifactError, match="RotateHeads"):
        Intervention.load(tmp_path / "steer_heads")
