"""``nnaudit inspect MODEL.onnx``: what nnaudit sees in a model."""

from __future__ import annotations

import json

import click


@click.command("inspect", epilog="Exit codes: 0 ok (cross-check passed), 1 cross-check failed, 2 bad input.")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON description.")
@click.option("--samples", default=32, show_default=True, help="Random inputs for the onnxruntime cross-check.")
@click.option("--low", default=0.0, show_default=True, help="Lower bound of the random inputs.")
@click.option("--high", default=1.0, show_default=True, help="Upper bound of the random inputs.")
def command(model: str, as_json: bool, samples: int, low: float, high: float) -> None:
    """Show MODEL's layers, shapes, parameter counts, op support and the
    onnxruntime cross-check (IR vs onnxruntime on random inputs in [LOW, HIGH])."""
    from nnaudit.networks import load

    net = load(model)
    check = net.check(samples=samples, low=low, high=high)
    info = net.summary()
    info["check"] = check.to_dict()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _print_table(info)
    if not check.ok:
        raise SystemExit(1)


def _print_table(info: dict) -> None:
    click.echo(f"model   {info['source']}  (sha256 {info['sha256'][:12]}, opset {info['opset']})")
    click.echo(f"input   {info['input']['name']} {tuple(info['input']['shape'])}")
    click.echo(f"output  {info['output']['name']} {tuple(info['output']['shape'])}")
    click.echo(f"params  {info['num_params']:,}")
    click.echo("")
    click.echo(f"{'#':>3}  {'layer':<28} {'type':<20} {'output shape':<18} {'params':>8}  attributes")
    for i, layer in enumerate(info["layers"]):
        shape = str(tuple(layer["output_shape"]))
        click.echo(f"{i:>3}  {layer['name'][:28]:<28} {layer['type']:<20} {shape:<18} {layer['num_params']:>8}  {layer['attributes']}")
    c = info["check"]
    verdict = "OK" if c["ok"] else "MISMATCH"
    click.echo("")
    click.echo(f"onnxruntime cross-check: {verdict}  max relative error {c['max_rel_error']:.2e} "
               f"(allowed {c['rtol']:g}) over {c['samples']} random inputs; arg-max agreement {c['argmax_agree']:.0%}")
