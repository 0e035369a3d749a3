"""``nnaudit property``: write VNN-LIB properties without writing VNN-LIB by hand."""

from __future__ import annotations

import click
import numpy as np

from nnaudit.commands import normalisation
from nnaudit.commands.types import FiniteFloatRange
from nnaudit.errors import ConfigError, DataError

EPS = FiniteFloatRange(min=0.0)


@click.group("property")
def command() -> None:
    """Write VNN-LIB properties (for `nnaudit verify` and `kind = "verify"` checks)."""


@command.command("robustness")
@click.option("--data", required=True, help="A bundled data set (digits, moons, ...) or an .npz with arrays x, y.")
@click.option("--index", type=click.IntRange(min=0), required=True, help="The sample of the data (0-based).")
@click.option("--eps", type=EPS, required=True, help="L-inf radius around the sample (in pixels).")
@click.option("--target", type=click.IntRange(min=0), default=None,
              help="Only this class counts as a violation (targeted); default: any other class.")
@click.option("--label", type=click.IntRange(min=0), default=None, help="The class to keep (default: the data's label).")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Number of classes (default: --model's outputs, else the data's largest label + 1).")
@click.option("--model", default=None, help="A zoo name or .onnx: checks the property fits its input and output.")
@click.option("--clip", nargs=2, type=FiniteFloatRange(), default=(0.0, 1.0), show_default=True,
              metavar="LOW HIGH", help="Valid input range; the box is clipped to it.")
@normalisation.options(mean_help="Map the box to a model that expects normalised input: (pixel - mean) / std, "
                                 "per channel (channels first) or one value.",
                       std_help="Standard deviation of that normalisation (> 0).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True, help="The .vnnlib file to write.")
def robustness(data: str, index: int, eps: float, target: int | None, label: int | None, classes: int | None,
               model: str | None, clip: tuple[float, float], mean: str | None, std: str | None, output: str) -> None:
    """Local robustness of one sample: every input within EPS of it keeps its class."""
    from nnaudit.checks.adapters import load_network
    from nnaudit.networks.datasets import read_data
    from nnaudit.verify.vnnlib_write import local_robustness_property, write_vnnlib

    if not clip[0] < clip[1]:
        raise ConfigError(f"--clip: expected LOW < HIGH, got {clip[0]:g} {clip[1]:g}")
    x, y, source = read_data(data)
    if not 0 <= index < len(x):
        raise DataError(f"{source}: --index {index} is outside 0..{len(x) - 1}")
    sample = np.asarray(x[index], dtype=np.float64)
    if sample.size and (sample.min() < clip[0] or sample.max() > clip[1]):
        raise DataError(f"{source}: sample {index} has values in [{sample.min():g}, {sample.max():g}], outside the "
                        f"clip range [{clip[0]:g}, {clip[1]:g}]; give the data's valid range with --clip LOW HIGH")
    label = int(np.asarray(y).reshape(-1)[index]) if label is None else label
    net = load_network(model) if model else None
    classes = classes or (net.output_size if net is not None else int(np.max(y)) + 1)
    if net is not None and (net.input_size != sample.size or net.output_size != classes):
        raise DataError(f"{source}: sample {index} has {sample.size} values and {classes} classes, but {model} "
                        f"takes {net.input_size} inputs and gives {net.output_size} outputs")
    norm = normalisation.parse(mean, std)
    channels = int(sample.shape[0]) if norm is not None and sample.ndim == 3 else 1
    prop = local_robustness_property(sample, eps, label, classes, target=target, clip=clip,
                                     mean=None if norm is None else norm.mean, std=None if norm is None else norm.std,
                                     channels=channels, name=f"{source} sample {index} eps={eps:g}")
    path = write_vnnlib(prop, output)
    kind = f"targeted at class {target}" if target is not None else "untargeted"
    click.echo(f"wrote {path}: sample {index} of {source} (label {label}), eps={eps:g} L-inf, {kind}, "
               f"{sample.size} inputs, {classes} outputs")
