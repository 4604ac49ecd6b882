"""Model cards: MODEL_CARD.md (the template) + an artifact's config.json -> README.md.

Cards are made with huggingface_hub's ``ModelCard.from_template`` so the YAML header (``library_name``,
tags, license, datasets, ``model-index``) is what the Hub expects. Nothing on a card is typed by hand:
every number comes from config.json, which ``save_artifact`` filled from the model and its evaluation,
and :func:`check_card` proves a rendered card still agrees with its config.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from menas_zoo.artifact import CARD, CONFIG, read_config
from menas_zoo.costs import human
from menas_zoo.errors import MenasError, first_line
from menas_zoo.io import write_json_atomic, write_text_atomic
from menas_zoo.space.genotype import Genotype

LICENSE = "apache-2.0"
TAGS = ["menas-zoo", "image-classification", "neural-architecture-search", "pruning", "lottery-ticket", "mobilenetv3"]
#: Our dataset names -> (Hub dataset id, display name), for the card's ``datasets`` and ``model-index``.
HUB_DATASETS = {"fashion-mnist": ("zalando-datasets/fashion_mnist", "Fashion-MNIST"),
                "cifar10": ("uoft-cs/cifar10", "CIFAR-10")}


def template_path() -> Path:
    """The packaged copy of MODEL_CARD.md (a test keeps it identical to the one at the repo root)."""
    return Path(str(resources.files("menas_zoo.hub").joinpath("MODEL_CARD.md")))


def card_data(config: dict[str, Any], model_name: str) -> ModelCardData:
    accuracy = config["metrics"].get("accuracy")
    datasets, eval_results = None, None
    if accuracy:
        hub_id, pretty = HUB_DATASETS.get(accuracy["dataset"], (accuracy["dataset"], accuracy["dataset"]))
        datasets = [hub_id]
        eval_results = [EvalResult(task_type="image-classification", task_name="Image Classification",
                                   dataset_type=hub_id, dataset_name=pretty, dataset_split=accuracy["split"],
                                   metric_type="accuracy", metric_name="Top-1 accuracy",
                                   metric_value=round(float(accuracy["value"]), 4))]
    return ModelCardData(library_name="menas-zoo", license=LICENSE, tags=list(TAGS), datasets=datasets,
                         metrics=["accuracy"] if accuracy else None, pipeline_tag="image-classification",
                         model_name=model_name, eval_results=eval_results)


def render_card(config: dict[str, Any], *, model_name: str, load_ref: str | None = None) -> ModelCard:
    """The card of an artifact, from its config alone."""
    genotype = Genotype.from_dict(config["genotype"])
    metrics, spec, provenance = config["metrics"], config["input_spec"], config.get("provenance") or {}
    stages = genotype.to_dict()["stages"]
    return ModelCard.from_template(
        card_data(config, model_name),
        template_path=str(template_path()),
        model_name=model_name,
        description=config.get("description") or "",
        result_rows=result_rows(metrics),
        in_chans=genotype.in_chans, resolution=genotype.resolution, num_classes=genotype.num_classes,
        stem=genotype.stem, head=genotype.head, fc=genotype.fc,
        stage_rows=[(s + 1, ", ".join(blocks)) for s, blocks in enumerate(stages)],
        prune_rows=[(block, kept, total) for block, (kept, total) in (config.get("prune_summary") or {}).items()],
        load_ref=load_ref or model_name,
        mean=spec.get("mean"), std=spec.get("std"),
        labels=", ".join(config["labels"]) if config.get("labels") else None,
        performance_rows=performance_rows(metrics),
        deployment=metrics.get("deployment"),
        provenance_rows=[(key, value) for key, value in provenance.items() if not isinstance(value, (dict, list))],
    )


def result_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key in ("accuracy", "val_accuracy"):
        if metrics.get(key):
            m = metrics[key]
            rows.append((f"top-1 accuracy ({m['dataset']}, {m['split']})", f"{m['value']:.4f}"))
    rows.append(("parameters", f"{metrics['params']:,} ({human(metrics['params'])})"))
    rows.append(("MACs", f"{metrics['macs']:,} ({human(metrics['macs'])})"))
    if metrics.get("latency"):
        lat = metrics["latency"]
        rows.append((f"latency ({lat.get('runtime', 'runtime?')}, batch 1, {lat.get('machine', 'machine?')})",
                     f"{lat['ms']:.3f} ms"))
    return rows


def performance_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per precision of the recorded export: size, p50/p90 and img/s at batch 1 and 32, peak memory."""
    deployment = metrics.get("deployment") or {}
    rows = []
    for precision, p in (deployment.get("precisions") or {}).items():
        cells = [precision, f"{p['size_bytes'] / 1e6:.2f} MB"]
        for batch in ("1", "32"):
            b = (p.get("batches") or {}).get(batch)
            cells += [f"{b['p50_ms']:.3f} / {b['p90_ms']:.3f}", f"{b['images_per_s']:,.0f}"] if b else ["-", "-"]
        cells.append(f"{p['peak_memory_mb']:.1f} MB" if p.get("peak_memory_mb") is not None else "-")
        rows.append(tuple(cells))
    return rows


def deployment_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The part of an export report (export_report.json) that a model card and ``menas-zoo list`` show."""
    if not isinstance(report, dict) or not report.get("precisions"):
        raise MenasError("the export report has no per-precision latency; re-export with this menas-zoo version")
    machine = (report.get("latency") or {}).get("machine") or {}
    return {"runtime": f"onnxruntime {machine.get('onnxruntime', '?')}",
            "providers": machine.get("providers") or ["CPUExecutionProvider"],
            "machine": f"{machine.get('cpu', '?')}, {machine.get('usable_cores', '?')} cores",
            "precisions": report["precisions"]}


def record_export(directory: str | Path, report_path: str | Path) -> None:
    """Copy the per-precision measurements of an export report into the artifact's config.json metrics."""
    try:
        report = json.loads(Path(report_path).read_text())
    except (OSError, ValueError) as exc:
        raise MenasError(f"cannot read export report {report_path}: {exc}") from None
    config = read_config(directory)
    genotype = (report.get("model") or {}).get("genotype")
    if genotype is not None and genotype != config["genotype"]:
        raise MenasError(f"{report_path} is the report of another network (its genotype differs from {directory})")
    config["metrics"]["deployment"] = deployment_metrics(report)
    write_json_atomic(Path(directory) / CONFIG, config)


def check_card(card: ModelCard | str, config: dict[str, Any]) -> None:
    """Fail unless ``card`` parses as a Hub card and states exactly the numbers in ``config``."""
    try:
        card = ModelCard(card if isinstance(card, str) else card.content)
    except Exception as exc:  # huggingface_hub raises ValueError or a YAML error on a bad header
        raise MenasError(f"model card does not parse: {first_line(exc)}") from None
    data = card.data
    if data.library_name != "menas-zoo":
        raise MenasError(f"model card: library_name is {data.library_name!r}, expected 'menas-zoo'")
    accuracy = config["metrics"].get("accuracy")
    if accuracy:
        results = data.eval_results or []
        if len(results) != 1 or results[0].metric_type != "accuracy":
            raise MenasError("model card: model-index must hold exactly one accuracy result")
        if abs(float(results[0].metric_value) - accuracy["value"]) > 5e-5:
            raise MenasError(f"model card says accuracy {results[0].metric_value}, "
                             f"config.json says {accuracy['value']}")
        if results[0].dataset_split != accuracy["split"]:
            raise MenasError(f"model card: accuracy split {results[0].dataset_split!r} != {accuracy['split']!r}")
    for label, value in result_rows(config["metrics"]):
        if f"| {label} | {value} |" not in card.text:
            raise MenasError(f"model card: row {label!r} = {value!r} is missing or differs from config.json")
    for row in performance_rows(config["metrics"]):
        if "| " + " | ".join(row) + " |" not in card.text:
            raise MenasError(f"model card: performance row of {row[0]} is missing or differs from config.json")


def write_card(directory: str | Path, *, model_name: str | None = None, load_ref: str | None = None,
               export_report: str | Path | None = None) -> Path:
    """Render, check and write ``directory/README.md`` (atomically); return its path. With
    ``export_report``, its per-precision measurements are first recorded in config.json."""
    directory = Path(directory)
    if export_report is not None:
        record_export(directory, export_report)
    config = read_config(directory)
    card = render_card(config, model_name=model_name or directory.resolve().name, load_ref=load_ref)
    check_card(card, config)
    write_text_atomic(directory / CARD, str(card))
    return directory / CARD
