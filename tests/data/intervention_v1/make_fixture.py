"""Writes the version-1 intervention files this folder holds, and the organism's last-position
logits under each, with the toolkit's first intervention format (one record per part:
op/kinds/layers/heads/positions/alpha/params/tensors). It only runs against that format's writer
(`Intervention` with `with_alpha`, `scale`, positional `alpha`, and the organism then at interp.organism); the files are kept so that
tests/test_intervention_files.py can check that they still load and act the same.

    python tests/data/intervention_v1/make_fixture.py tests/data/intervention_v1
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from interp.causal.ablate import head_reference
from interp.intervention import Intervention
from interp.model import load_model
from interp.organism.data import plain_prompts
from interp.steering import fit_antidote, fit_head_directions
from probes.directions import mean_difference_direction

TEXTS_N = 3


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = load_model("organism")
    prompts = plain_prompts(seed=0, n_per_label=32)
    harmful, harmless = prompts.filter(label="harmful"), prompts.filter(label="harmless")
    texts = harmful.texts[:2] + harmless.texts[:1]
    batch = model.encode(texts)
    hd = fit_head_directions(model, prompts)
    d = mean_difference_direction(model, harmful, harmless, 1)
    anti = fit_antidote(model, harmful, harmless, calibrate=False)
    ref = head_reference(model, prompts[-8:])
    w = torch.ones(batch.tokens.shape)
    w[:, -4:-1] = 0.3
    with torch.no_grad():
        src = model.bridge.run_with_cache(batch.tokens, attention_mask=batch.attention_mask)[1]["blocks.1.hook_resid_post"]
    ivs = {"steer_heads": Intervention.steer_heads(hd, hd.top(3), 1.5),
           "layer_heads": Intervention.steer_layer(hd, 0, 0.7, mode="heads"),
           "layer_resid": Intervention.steer_layer(hd, 1, 1.0, mode="resid"),
           "add_direction": Intervention.add_direction(d, alpha=0.7),
           "ablate_direction": Intervention.ablate_direction(d),
           "antidote": anti.intervention(0.3),
           "sharpen": Intervention.sharpen(0.5, layers=[0, 1], heads=[1, 2]),
           "sharpen_pairs": Intervention.sharpen(0.4, heads=[(2, 3), (3, 0)]),
           "zero_heads": Intervention.ablate_heads([(0, 1), (2, 3)], "zero"),
           "mean_heads": Intervention.ablate_heads([(1, 2)], "mean", ref),
           "resample_heads": Intervention.ablate_heads([(1, 2), (3, 5)], "resample", ref, seed=3),
           "scale": Intervention.scale("z", [0], 0.5, heads=[3]),
           "patch": Intervention.patch("resid_post", 1, src[:, -1].flip(0), positions="last"),
           "weigh_tokens": Intervention.weigh_tokens(w)}
    ivs["composite"] = ivs["steer_heads"] + ivs["ablate_direction"] + ivs["sharpen"]
    expected = {}
    with torch.no_grad():
        for name, iv in ivs.items():
            iv.save(out / name, model=model)
            with iv.apply(model):
                expected[name] = model.bridge(batch.tokens, attention_mask=batch.attention_mask)[:, -1].contiguous()
    expected["tokens"], expected["attention_mask"] = batch.tokens.contiguous(), batch.attention_mask.contiguous()
    save_file(expected, str(out / "expected_logits.safetensors"), metadata={"model_fingerprint": model.fingerprint})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
