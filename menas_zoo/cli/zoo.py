"""Zoo commands: ``list``, ``load``, ``push`` and ``card``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from menas_zoo.cli.app import command, console, print_json, print_table
from menas_zoo.cli.options import (REF_HELP, data_dir_option, dataset_option, endpoint_option, hub_offline,
                                   json_option, offline_option)
from menas_zoo.costs import human


def _fmt_accuracy(metrics: dict) -> str:
    acc = metrics.get("accuracy")
    return f"{acc['value']:.4f} ({acc['split']})" if acc else "-"


def _fmt_latency(metrics: dict) -> str:
    """The recorded ORT latency: the export's fp32 batch-1 p50 where an export was recorded, else the
    search's measurement."""
    fp32 = ((metrics.get("deployment") or {}).get("precisions") or {}).get("fp32") or {}
    b1 = (fp32.get("batches") or {}).get("1")
    if b1:
        return f"{b1['p50_ms']:.3f} ms (fp32, batch 1 p50)"
    lat = metrics.get("latency")
    return f"{lat['ms']:.3f} ms" if lat else "-"


def _fmt_precisions(metrics: dict, batch: str, field: str) -> str:
    """Per precision of the recorded export, e.g. ``fp32 0.210 / int8 0.326`` (p50 ms) or img/s."""
    precisions = (metrics.get("deployment") or {}).get("precisions") or {}
    cells = []
    for name, p in precisions.items():
        b = (p.get("batches") or {}).get(batch)
        if b:
            cells.append(f"{name} {b[field]:.3f}" if field == "p50_ms" else f"{name} {b[field]:,.0f}")
    return " / ".join(cells) or "-"


@command(name="list")
def list_command(
    pattern: str = typer.Argument("*", metavar="PATTERN", help="Shell-style pattern, e.g. 'mt-*'."),
    as_json: bool = json_option(),
) -> None:
    """List registered zoo models with their measured numbers (reads the registry only: no model is loaded)."""
    from menas_zoo.hub.registry import get_entry, list_models

    entries = [get_entry(name) for name in list_models(pattern, pretrained=True)]
    if as_json:
        print_json([{"name": e.name, "repo_id": e.repo_id, "revision": e.revision, "metrics": e.metrics}
                    for e in entries])
        return
    # ORT latency per precision from the recorded export; a model without one shows the search's number.
    print_table(None, ["name", "params", "MACs", "accuracy", "ORT b1 p50 ms", "ORT b32 img/s", "repo"],
                [[e.name, human(e.metrics["params"]), human(e.metrics["macs"]), _fmt_accuracy(e.metrics),
                  _fmt_precisions(e.metrics, "1", "p50_ms") if e.metrics.get("deployment") else _fmt_latency(e.metrics),
                  _fmt_precisions(e.metrics, "32", "images_per_s"), e.repo_id] for e in entries])


@command(name="load")
def load_command(
    ref: str = typer.Argument(..., metavar="REF", help=REF_HELP),
    eval_test: bool = typer.Option(False, "--eval-test", help="Measure top-1 accuracy on the test split of "
                                                             "--dataset now."),
    eval_alias: bool = typer.Option(False, "--eval", hidden=True, help="Old name of --eval-test."),
    dataset: str = dataset_option("for --eval-test"),
    data_dir: Optional[Path] = data_dir_option(),
    as_json: bool = json_option(),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Resolve a model, build it, check its weights, and print a summary."""
    from menas_zoo.hub.resolve import load
    from menas_zoo.train import evaluate_test_split

    evaluate_test = eval_test or eval_alias
    t0 = time.perf_counter()
    artifact, resolved = load(ref, offline=hub_offline(offline), endpoint=endpoint)
    seconds = time.perf_counter() - t0
    config, genotype = artifact.config, artifact.genotype
    summary = {"ref": ref, "source": resolved.source, "path": str(resolved.path), "repo_id": resolved.repo_id,
               "revision": resolved.revision, "genotype": genotype.to_compact(), "metrics": config["metrics"],
               "load_seconds": round(seconds, 3)}
    if evaluate_test:
        spec = config.get("input_spec") or {}
        summary["measured_test_accuracy"] = evaluate_test_split(artifact.model, dataset, data_dir,
                                                                mean=spec.get("mean"), std=spec.get("std"))
    if as_json:
        print_json(summary)
        return
    metrics = config["metrics"]
    rows = [["source", resolved.source], ["path", str(resolved.path)]]
    if resolved.repo_id:
        rows.append(["repo", f"{resolved.repo_id}@{resolved.revision or 'main'}"])
    rows += [["genotype", genotype.to_compact()], ["params", f"{metrics['params']:,}"],
             ["MACs", f"{metrics['macs']:,}"],
             ["accuracy (recorded)", _fmt_accuracy(metrics)], ["latency (recorded)", _fmt_latency(metrics)],
             ["loaded in", f"{seconds:.3f} s"]]
    if evaluate_test:
        rows.append(["accuracy (measured now, test)", f"{summary['measured_test_accuracy']:.4f}"])
    print_table(None, ["model", ref], rows)


@command(name="push")
def push_command(
    run_or_dir: Path = typer.Argument(..., metavar="DIR", help="Artifact folder (e.g. a 'train --out' run)."),
    repo_id: str = typer.Option(..., "--repo-id", metavar="ORG/NAME", help="Repo on the Hub."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: Optional[str] = typer.Option(None, "--revision", metavar="BRANCH",
                                           help="Branch to commit to (created if missing)."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", metavar="TEXT",
                                                 help="Commit message (default: \"Upload NAME with menas-zoo\")."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token with write access (default: HF_TOKEN or "
                                                              "the saved login)."),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Publish an artifact folder with its model card; prints the commit id."""
    from menas_zoo.hub.push import push_artifact

    commit = push_artifact(run_or_dir, repo_id, private=private, revision=revision, commit_message=commit_message,
                           token=token, endpoint=endpoint)
    typer.echo(commit)


@command(name="card")
def card_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="Artifact folder."),
    name: Optional[str] = typer.Option(None, help="Model name on the card (default: the folder name)."),
    export_report: Optional[Path] = typer.Option(None, metavar="FILE",
                                                 help="export_report.json of this model: record its latency, "
                                                      "throughput and memory per precision in config.json "
                                                      "and on the card."),
) -> None:
    """Render the model card into DIR/README.md and check it against config.json."""
    from menas_zoo.hub.card import write_card

    path = write_card(directory, model_name=name, export_report=export_report)
    console.print(f"wrote {path} (card checked against config.json"
                  f"{', performance from ' + str(export_report) if export_report else ''})", highlight=False)
