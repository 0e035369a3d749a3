"""``nnaudit adapt``: DANN domain adaptation, then export of the adapted model to ONNX.

Trains DANN (and the source-only baseline, same network and budget) on a
bundled task or on the user's source/target ``.npz`` files, shows a progress
bar per epoch with the live metrics, exports the adapted classifier to ONNX
(checked by onnxruntime, loadable by ``nnaudit verify/regions/attack``) and
writes the ``adapt`` JSON record (incrementally, after every epoch).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nnaudit.commands.types import OUTPUT_FILE

TASKS = ("moons", "moons-hard", "digits-mnist", "mnist-digits", "digits-m")  # nnaudit.adaptation.tasks.Task values


@click.command("adapt", epilog="Exit codes: 0 ok, 2 bad input. Ctrl-C keeps the checkpoint; rerun with --resume.")
@click.option("--source", type=click.Path(dir_okay=False), help="Source .npz with x (N, ...) and integer labels y (N,).")
@click.option("--target", type=click.Path(dir_okay=False), help="Target .npz with x (M, ...); optional y is used for scoring only.")
@click.option("--task", type=click.Choice(TASKS), help="A bundled task instead of --source/--target.")
@click.option("--epochs", type=int, default=None, help="Training epochs [default: task preset: moons 300, digit tasks 30, custom 30].")
@click.option("--batch-size", type=int, default=None, help="SGD batch, half source and half target [default: task preset].")
@click.option("--lr", "lr0", type=float, default=None, help="Initial learning rate mu0 of mu0/(1+10p)^0.75 [default: task preset].")
@click.option("--device", default="auto", show_default=True,
              help="cpu, cuda, cuda:N or auto (CUDA when torch sees a GPU, else CPU).")
@click.option("--amp", is_flag=True, help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, batches and generated data.")
@click.option("--baseline/--no-baseline", default=True, show_default=True, help="Train the source-only baseline alongside.")
@click.option("--on-target", is_flag=True,
              help="Also train on the labelled target (the upper bound) and report the fraction of the gap DANN closes.")
@click.option("--invert", is_flag=True, help="digits-m: also invert the target images.")
@click.option("--rotate", type=float, default=0.0, show_default=True, help="digits-m: rotate target images by up to this many degrees.")
@click.option("--noise", type=float, default=0.0, show_default=True, help="digits-m: add Gaussian noise of this std to the target.")
@click.option("--out", required=True, type=OUTPUT_FILE, help="Where to write the adapted model (ONNX).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Write the run record (adapt result JSON) here.")
@click.option("--checkpoint", type=OUTPUT_FILE, help="Checkpoint file [default: OUT.ckpt].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
def command(**opts: Any) -> None:
    """Domain-adversarial training (DANN, Ganin et al. 2016) of a classifier on
    labelled SOURCE data and unlabelled TARGET data, and export of the adapted
    classifier to ONNX.  Use either --task or both --source and --target."""
    from nnaudit.adaptation.config import for_task
    from nnaudit.adaptation.data import npz_task
    from nnaudit.adaptation.shifts import DigitsShift
    from nnaudit.adaptation.tasks import bundled_task
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.adaptation.record import adapt_body
    from nnaudit.adaptation.trainer import train_dann
    from nnaudit.networks.devices import device_name
    from nnaudit.reports import schema

    if opts["task"] and (opts["source"] or opts["target"]):
        raise click.UsageError("use either --task or --source/--target, not both")
    if not opts["task"] and not (opts["source"] and opts["target"]):
        raise click.UsageError(f"give --task {'|'.join(TASKS)}, or both --source S.npz and --target T.npz")
    if opts["task"]:
        shift = DigitsShift(invert=opts["invert"], rotate=opts["rotate"], noise=opts["noise"])
        data = bundled_task(opts["task"], seed=opts["seed"], shift=shift)
    else:
        data = npz_task(opts["source"], opts["target"])
    overrides = {k: opts[k] for k in ("epochs", "batch_size", "lr0") if opts[k] is not None}
    config = for_task(data.name, device=opts["device"], amp=opts["amp"], seed=opts["seed"],
                      source_only=opts["baseline"], **overrides)
    device = device_name(config.device)
    out = Path(opts["out"])
    ckpt = Path(opts["checkpoint"]) if opts["checkpoint"] else out.with_name(out.name + ".ckpt")
    if opts["resume"] and not ckpt.is_file():
        click.echo(f"note: no checkpoint at {ckpt}; starting a fresh run", err=True)
    doc = schema.new_result("adapt", settings={**config.to_dict(), "task": data.name, "shift": _shift(opts),
                                               "source": opts["source"], "target": opts["target"],
                                               "out": str(out), "checkpoint": str(ckpt)},
                            seeds={"seed": config.seed}, device=device)
    json_path = opts["json_path"]
    progress = _Progress(config.epochs, data.name, device, doc, json_path)
    with progress:
        run = train_dann(data, config, checkpoint=ckpt, resume=opts["resume"], on_epoch=progress.epoch)
    export = export_onnx(run, out, samples=_check_samples(data))
    on_target = _on_target(data, config) if opts["on_target"] else None
    doc.update(adapt_body(run, data, export, on_target))
    schema.finish(doc)
    if json_path:
        schema.write_json(doc, json_path)
    _summary(run, export, json_path, doc.get("gap"))


def _on_target(data: Any, config: Any) -> float:
    from nnaudit.adaptation.gap import train_on_target

    if data.target.y is None:
        raise click.UsageError("--on-target needs target labels 'y' in the target .npz")
    return train_on_target(data, config)


def _shift(opts: dict[str, Any]) -> dict[str, Any] | None:
    if opts["task"] != "digits-m":
        return None
    return {"textures": True, "invert": opts["invert"], "rotate": opts["rotate"], "noise": opts["noise"]}


def _check_samples(data: Any) -> Any:
    import numpy as np

    return np.concatenate([data.source_eval.x[:128], data.target_eval.x[:128]])


class _Progress:
    """Per-epoch progress bar on stderr, and the JSON record rewritten after every epoch."""

    def __init__(self, epochs: int, task: str, device: str, doc: dict[str, Any], json_path: str | None) -> None:
        self.bar = click.progressbar(length=epochs, label=f"DANN {task} on {device}", file=sys.stderr,
                                     item_show_func=_describe, show_pos=True)
        self.task, self.device, self.doc, self.json_path = task, device, doc, json_path

    def __enter__(self) -> "_Progress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def epoch(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from nnaudit.adaptation.record import partial_body
        from nnaudit.reports import schema

        self.bar.update(max(1, record["epoch"] - self.bar.pos), current_item=record)
        if self.json_path:
            self.doc.update(partial_body(self.task, self.device, history))
            schema.write_json(self.doc, self.json_path)


def _describe(record: dict[str, Any] | None) -> str | None:
    if not record:
        return None
    d, b = record["dann"], record.get("source_only") or {}
    parts = [f"src {d['source_accuracy']:.3f}"]
    if d.get("target_accuracy") is not None:
        parts.append(f"tgt {d['target_accuracy']:.3f}")
    if b.get("target_accuracy") is not None:
        parts.append(f"(src-only tgt {b['target_accuracy']:.3f})")
    parts.append(f"dom-acc {d['domain_accuracy']:.2f} L_y {d['label_loss']:.3f} L_d {d['domain_loss']:.3f} λ {d['lambda']:.2f}")
    return " ".join(parts)


def _summary(run: Any, export: Any, json_path: str | None, gap: dict[str, Any] | None) -> None:
    f = run.final
    for name, label in (("source_only", "source-only"), ("dann", "DANN")):
        if name in f:
            tgt = f[name]["target_accuracy"]
            tgt_text = "n/a (no target labels)" if tgt is None else f"{tgt:.4f}"
            click.echo(f"{label:<12} source accuracy {f[name]['source_accuracy']:.4f}  target accuracy {tgt_text}  "
                       f"A-distance features {f[name]['a_distance']:.3f}, logits {f[name]['a_distance_logits']:.3f}")
    if gap and gap.get("train_on_target") is not None:
        closed = "no gap" if gap["closed"] is None else f"{100 * gap['closed']:.0f} % of the gap closed"
        click.echo(f"{'on-target':<12} target accuracy {gap['train_on_target']:.4f}  ({closed})")
    speed = "all epochs from the checkpoint" if run.time_per_epoch_s is None else f"{run.time_per_epoch_s:.3f} s/epoch"
    click.echo(f"wrote {export.path} (onnxruntime vs torch max abs error {export.max_abs_error:.2e}; "
               f"{speed} on {run.device})")
    if json_path:
        click.echo(f"wrote {json_path}")


