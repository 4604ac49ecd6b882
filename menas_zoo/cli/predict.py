"""Classify images: ``predict`` (files or folders, top-k) and ``demo`` (a PNG grid of test images).

This module imports no torch at load time: ``menas-zoo predict model.onnx ...`` runs on onnxruntime,
numpy and Pillow alone (see :mod:`menas_zoo.cli`). Models given as zoo refs or artifact folders load
PyTorch inside :func:`menas_zoo.predict.load_predictor`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import track

from menas_zoo.cli.app import command, console, err_console, print_json, print_table
from menas_zoo.cli.options import (data_dir_option, dataset_option, endpoint_option, hub_offline, json_option,
                                   offline_option, providers_option, threads_option)


@command(name="predict")
def predict_command(
    model: str = typer.Argument(..., metavar="REF_OR_ONNX", help="An .onnx file, a zoo name, hf-hub:ORG/NAME[@REV], "
                                                                 "or an artifact folder."),
    images: List[str] = typer.Argument(..., metavar="IMAGE...", help="PNG/JPEG files or folders of them."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Labels to show per image."),
    batch_size: int = typer.Option(32, min=1, help="Images per inference call."),
    providers: Optional[str] = providers_option(),
    threads: Optional[int] = threads_option(None, several=False, when_unset="the runtime's choice"),
    labels: Optional[str] = typer.Option(None, metavar="NAMES_OR_FILE",
                                         help="Class names, comma-separated or a file with one per line "
                                              "(for an .onnx file without menas-zoo metadata)."),
    mean: Optional[str] = typer.Option(None, metavar="M[,M...]",
                                       help="Per-channel mean of [0, 1] pixels, comma-separated."),
    std: Optional[str] = typer.Option(None, metavar="S[,S...]",
                                      help="Per-channel std of [0, 1] pixels, comma-separated."),
    resize: bool = typer.Option(True, help="Resize images to the model's resolution (--no-resize: refuse "
                                           "other sizes)."),
    as_json: bool = json_option(),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Classify images with a model: top-k labels with probabilities."""
    from menas_zoo.edge import parse_floats, parse_labels
    from menas_zoo.predict import load_predictor

    predictor = load_predictor(model, providers=providers, threads=threads, labels=parse_labels(labels),
                               mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"),
                               offline=hub_offline(offline), endpoint=endpoint)
    progress = None if as_json else (lambda starts: track(starts, description="classifying", console=err_console,
                                                          transient=True, disable=len(starts) < 2))
    predictions = predictor.predict_files(images, top_k=top_k, batch_size=batch_size, resize=resize, progress=progress)
    if as_json:
        print_json({"model": model, "providers": _providers(predictor),
                    "predictions": [p.as_dict() for p in predictions]})
        return
    columns = ["image"] + [f"#{i + 1}" for i in range(len(predictions[0].top))]
    print_table(None, columns, [[p.image] + [f"{label} {prob:.1%}" for label, prob in p.top] for p in predictions])


def _providers(predictor) -> list[str] | None:
    session = getattr(predictor, "session", None)
    return session.get_providers() if session is not None else None


@command(name="demo")
def demo_command(
    ref: str = typer.Argument(..., metavar="REF_OR_ONNX", help="A zoo name, hf-hub:ORG/NAME[@REV], artifact folder, "
                                                               "or an .onnx file."),
    out: Path = typer.Option(Path("demo.png"), "--out", metavar="FILE", help="PNG file to write."),
    count: int = typer.Option(16, min=1, help="Test images to show."),
    seed: int = typer.Option(0, help="Which images: the same seed shows the same ones."),
    dataset: str = dataset_option("to draw test images from"),
    data_dir: Optional[Path] = data_dir_option(),
    providers: Optional[str] = providers_option(),
    as_json: bool = json_option("instead of a summary"),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Classify sample test images and write a PNG grid with predicted and true labels (mistakes in red)."""
    from menas_zoo.demo import demo_ref

    with err_console.status("classifying test images") if not as_json else contextlib.nullcontext():
        result = demo_ref(ref, out, count=count, seed=seed, dataset=dataset, data_dir=data_dir, providers=providers,
                          offline=hub_offline(offline), endpoint=endpoint)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"wrote {result.path}: {result.correct}/{result.images} correct", highlight=False)
    if result.mistakes:
        print_table("mistakes", ["test image", "true", "predicted", "probability"],
                    [[m["index"], m["true"], m["predicted"], f"{m['probability']:.1%}"] for m in result.mistakes])

