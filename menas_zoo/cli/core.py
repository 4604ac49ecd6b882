"""Core commands: ``space sample``, ``info`` and ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from menas_zoo.cli.app import command, console, print_json, print_table, space_app
from menas_zoo.cli.options import (GENOTYPE_HELP, NETWORK_HELP, data_dir_option, dataset_option, device_option,
                                   endpoint_option, hub_offline, json_option, offline_option)
from menas_zoo.costs import genotype_cost, human
from menas_zoo.errors import MenasError
from menas_zoo.space import PROFILES, get_profile, sample_genotype


def profile_names() -> str:
    """The built-in search profiles with what each is for, for --help."""
    return ", ".join(f"{name} ({p.resolution} px)" for name, p in PROFILES.items())


@command(space_app, "sample")
def space_sample(
    profile: str = typer.Option("small", metavar="PROFILE", help=f"Search profile: {profile_names()}, or a JSON "
                                                                  "file of SearchProfile fields."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same genotype."),
    in_chans: int = typer.Option(1, min=1, help="Input channels."),
    num_classes: int = typer.Option(10, min=1, help="Number of classes."),
    max_params: Optional[float] = typer.Option(None, help="Parameter limit, e.g. 1e5: the draw is fitted into "
                                                          "60-100% of it."),
    max_macs: Optional[float] = typer.Option(None, help="MACs limit, e.g. 5e6 (fitted likewise)."),
    compact: bool = typer.Option(False, "--compact", help="Print the one-line form instead of JSON."),
) -> None:
    """Print a random genotype of a search profile, optionally fitted to a params/MACs budget."""
    genotype = sample_genotype(get_profile(profile), seed, in_chans=in_chans, num_classes=num_classes,
                               max_params=_limit(max_params, "--max-params"), max_macs=_limit(max_macs, "--max-macs"))
    typer.echo(genotype.to_compact() if compact else genotype.to_json())


def _limit(value: Optional[float], flag: str) -> Optional[int]:
    if value is None:
        return None
    if not value >= 1:  # also refuses NaN
        raise MenasError(f"{flag} must be a positive number, got {value:g}")
    return int(value)


@command(name="info")
def info(
    ref: str = typer.Argument(..., metavar="REF", help=NETWORK_HELP),
    in_chans: Optional[int] = typer.Option(None, min=1, help="Override a genotype's input channels."),
    resolution: Optional[int] = typer.Option(None, min=1, help="Override a genotype's input resolution."),
    num_classes: Optional[int] = typer.Option(None, min=1, help="Override a genotype's number of classes."),
    as_json: bool = json_option(),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Show a model's or genotype's blocks, parameters and MACs."""
    from menas_zoo.hub.resolve import resolve_network

    source = resolve_network(ref, in_chans=in_chans, resolution=resolution, num_classes=num_classes,
                             offline=hub_offline(offline), endpoint=endpoint)
    model = source.model
    genotype = model.genotype
    cost = genotype_cost(genotype)
    rows = model.block_table()
    trained = source.kind != "genotype"
    model_info = {"ref": ref, "kind": source.kind, "revision": source.revision,
                  "weights_sha256": source.weights_sha256} if trained else None
    if as_json:
        print_json({"genotype": genotype.to_dict(), "params": cost.params, "macs": cost.macs, "blocks": rows,
                    "model": model_info})
        return
    if not trained:
        what = f"{genotype.profile} genotype"
    else:
        what = f"{ref} @ {source.revision[:12]}" if source.revision else f"{ref} (artifact folder)"
    print_table(f"{what}, input {genotype.in_chans}x{genotype.resolution}x{genotype.resolution}, "
                f"{genotype.num_classes} classes",
                ["stage.block", "block string", "in", "hidden", "out", "k", "s", "SE", "act", "skip", "params"],
                [[f"{r['stage']}.{r['block']}", r["string"], r["in"], r["hidden"], r["out"], r["kernel"], r["stride"],
                  r["se"] or "-", r["act"], "yes" if r["shortcut"] else "-", human(r["params"])] for r in rows])
    console.print(f"stem {genotype.stem} (stride {genotype.stem_stride}), head {genotype.head}, "
                  f"fc {genotype.fc or '-'}")
    console.print(f"params {cost.params:,} ({human(cost.params)}), MACs {cost.macs:,} ({human(cost.macs)})")


@command(name="train")
def train_command(
    genotype_ref: str = typer.Argument(..., metavar="GENOTYPE", help=GENOTYPE_HELP),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Run folder: checkpoint, weights and metrics. "
                                                              "Re-run to resume."),
    epochs: int = typer.Option(30, min=1, help="Epochs."),
    dataset: str = dataset_option(),
    data_dir: Optional[Path] = data_dir_option(),
    resolution: Optional[int] = typer.Option(None, min=1, help="Input resolution: overrides the genotype's (an image "
                                                              "folder is resized to the genotype's)."),
    in_chans: Optional[int] = typer.Option(None, help="Input channels: overrides the genotype's (an image folder is "
                                                      "read as 1: grayscale or 3: RGB)."),
    num_classes: Optional[int] = typer.Option(None, min=1, help="Classes: overrides the genotype's (its head is "
                                                                "built for this many)."),
    batch_size: int = typer.Option(256, min=1, help="Images per training step."),
    optimizer: str = typer.Option("sgd", help="sgd or adamw."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: 0.1 x batch/256 for SGD, "
                                                  "2e-3 for AdamW)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay, not applied to BN and biases "
                                                            "(default: 5e-5 for SGD, 0.05 for AdamW)."),
    label_smoothing: float = typer.Option(0.1, help="Label smoothing of the cross-entropy loss."),
    bn_l1: float = typer.Option(0.0, help="BN-gamma L1 (network slimming) strength, e.g. 1e-4."),
    val_size: int = typer.Option(5000, help="Validation images carved from the training set."),
    train_subset: Optional[int] = typer.Option(None, help="Use only this many training images (quick runs)."),
    seed: int = typer.Option(0, help="Seed of the initial weights, the validation split and the data order."),
    device: str = device_option(),
    channels_last: bool = typer.Option(True, help="channels_last memory format (about 1.8x faster on CPU)."),
    eval_test: bool = typer.Option(False, "--eval-test", help="Report test-split accuracy at the end (never used "
                                                             "for selection)."),
    as_json: bool = json_option("of the final metrics"),
) -> None:
    """Train a genotype from scratch; killed and started again with the same command, it resumes."""
    from menas_zoo.space import resolve_genotype
    from menas_zoo.train import TrainConfig, train_artifact

    genotype = resolve_genotype(genotype_ref, in_chans=in_chans, resolution=resolution, num_classes=num_classes)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                      label_smoothing=label_smoothing, bn_l1=bn_l1, seed=seed, device=device,
                      channels_last=channels_last)
    run = train_artifact(genotype, out, cfg, dataset=dataset, data_dir=data_dir, val_size=val_size,
                         train_subset=train_subset, eval_test=eval_test, progress=not as_json)
    metrics = run.metrics
    if as_json:
        print_json({k: v for k, v in metrics.items() if k != "history"})
        return
    rows = [["val accuracy", f"{metrics['val_acc']:.4f}"], ["epochs", metrics["epochs"]],
            ["seconds", f"{metrics['seconds']:.1f}"], ["params", f"{metrics['params']:,}"],
            ["MACs", f"{metrics['macs']:,}"]]
    if eval_test:
        rows.append(["test accuracy", f"{metrics['test_acc']:.4f}"])
    print_table(f"trained {out}", ["metric", "value"], rows)
