"""`safety-heads export`: write a model whose weights have a refusal direction projected out
(interp.export), loadable with plain transformers and by every command (--model DIR)."""

from __future__ import annotations


def register(sub) -> None:
    from interp.cli import add_model_args

    p = sub.add_parser("export", help="write a Hugging Face model directory with a direction ablated in the weights "
                                      "(weight orthogonalization): what directional ablation does, without hooks")
    add_model_args(p)
    p.add_argument("--direction", required=True,
                   help="the direction: an artifact this toolkit saved (e.g. OUT/artifacts/direction.json, checked "
                        "against --model) or a direction.pt in the refusal_direction layout (its "
                        "direction_metadata.json beside it is read when present)")
    p.add_argument("--out", required=True, help="new directory for the exported model")
    p.add_argument("--allow-other-model", action="store_true",
                   help="use a direction artifact made on another model of the same shape (recorded)")
    p.set_defaults(func=_export)


def _export(args):
    from interp.commands.core import load_from_args
    from interp.direction_files import read_direction
    from interp.export import export_orthogonalized, layout_of

    model = load_from_args(args)
    layout_of(model)  # an unsupported architecture is refused before anything is read or written
    direction = read_direction(args.direction, model=model, allow_other_model=args.allow_other_model)
    out = export_orthogonalized(model, direction, args.out)
    return {"out": str(out), "model": model.name, "direction_layer": direction.layer,
            "check": f"safety-heads eval --model {out} (same data options as before) gives the refusal rates under "
                     "directional ablation"}
