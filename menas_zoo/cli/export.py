"""Export commands: ``export`` (ONNX + checker + parity + latency [+ int8]) and ``bench`` (latency, per-block table).

REF is resolved by :func:`menas_zoo.hub.resolve_model` for both commands: an artifact folder, a zoo name
or ``hf-hub:`` ref, or a genotype with ``--weights model.safetensors`` (or ``--random-init`` to time an
untrained network). ``export`` is :func:`menas_zoo.export.pipeline.export_ref`, ``bench``
:func:`menas_zoo.export.pipeline.bench_ref` (``--per-block``: :func:`menas_zoo.export.latency_table.per_block_table`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from menas_zoo.cli.app import command, console, err_console, print_json, print_table
from menas_zoo.cli.options import data_dir_option, dataset_option, endpoint_option, hub_offline, json_option, \
    offline_option, providers_option, threads_option
from menas_zoo.costs import genotype_cost, human
from menas_zoo.errors import EXIT_OVER_BUDGET, EXIT_PARITY, MenasError
from menas_zoo.export.defaults import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RUNS, DEFAULT_WARMUP

# torch, onnx and onnxruntime are imported inside the commands: --help must not pay for them.
if TYPE_CHECKING:
    from menas_zoo.export.bench import BenchReport
    from menas_zoo.export.pipeline import ExportOutcome


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MenasError(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise MenasError(f"{what} must be comma-separated positive integers, got {text!r}")
    return values


def latency_rows(report: BenchReport) -> list[list]:
    rows = []
    for s in report.onnxruntime:
        eager = report.eager_for(s)
        rows.append([s.batch_size, s.threads, f"{s.p50_ms:.3f}", f"{s.p90_ms:.3f}", f"{s.p99_ms:.3f}",
                     f"{s.mean_ms:.3f}", f"{s.images_per_s:,.0f}",
                     f"{s.stdev_pct:.0f}%", f"{eager.p50_ms:.3f}" if eager else "-",
                     f"{eager.p50_ms / s.p50_ms:.1f}x" if eager else "-"])
    return rows


LATENCY_COLUMNS = ["batch", "threads", "ORT p50 ms", "p90", "p99", "mean", "img/s", "stdev", "eager p50 ms",
                   "ORT speedup"]


def print_noise_warnings(report: BenchReport) -> None:
    """Part of the printed result, on stdout: stderr stays for the one line of a failure."""
    from menas_zoo.export.bench import noise_warnings

    for warning in noise_warnings(report):
        console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def precision_rows(precisions: dict) -> list[list]:
    rows = []
    for precision, p in precisions.items():
        cells = [precision, f"{p['size_bytes'] / 1e6:.2f} MB"]
        for batch in ("1", "32"):
            b = p["batches"].get(batch)
            cells += [f"{b['p50_ms']:.3f} / {b['p90_ms']:.3f}", f"{b['images_per_s']:,.0f}"] if b else ["-", "-"]
        cells.append(f"{p['peak_memory_mb']:.1f} MB" if p.get("peak_memory_mb") is not None else "-")
        rows.append(cells)
    return rows


PRECISION_COLUMNS = ["precision", "size", "b1 p50/p90 ms", "b1 img/s", "b32 p50/p90 ms", "b32 img/s", "peak memory"]


def print_machine(fingerprint: dict) -> None:
    console.print(f"machine: {fingerprint['cpu']}, {fingerprint['usable_cores']} usable cores, load "
                  f"{fingerprint['load_average']}; onnxruntime {fingerprint['onnxruntime']}, "
                  f"torch {fingerprint['torch']}, "
                  f"onnx {fingerprint['onnx']}"
                  + (f"; providers {', '.join(fingerprint['providers'])}" if fingerprint.get("providers") else ""),
                  highlight=False)


# -- export ----------------------------------------------------------------------------------------

@command(name="export")
def export_command(
    ref: str = typer.Argument(..., metavar="REF", help="Zoo name, hf-hub:ORG/NAME[@REV], artifact folder, or a "
                                                       "genotype with --weights."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder for model.onnx, model.int8.onnx and "
                                                               "export_report.json."),
    opset: int = typer.Option(DEFAULT_OPSET, help="ONNX opset (dynamo exporter: 18-21)."),
    exporter: str = typer.Option("dynamo", help="dynamo (torch.export-based, maintained) or torchscript "
                                                "(legacy, faster)."),
    dynamic_batch: bool = typer.Option(True, help="Export a symbolic batch dimension."),
    optimize: bool = typer.Option(False, "--optimize", help="Apply ONNX Runtime's offline graph optimizations "
                                                            "(the file then needs ONNX Runtime)."),
    int8: bool = typer.Option(False, "--int8", help="Also write a static int8 (QDQ) model and compare it with fp32."),
    calibration_method: str = typer.Option("minmax", help="int8 calibration: minmax, entropy, percentile or "
                                                          "distribution."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write a float16 model (float32 in/out), proved with its own "
                                                    "parity tolerance."),
    ort_format: bool = typer.Option(False, "--ort-format", help="Also write model.ort for ORT Mobile, after ORT's "
                                                               "mobile usability check."),
    providers: Optional[str] = providers_option(),
    max_latency_ms: Optional[float] = typer.Option(None, help=f"Fail (exit {EXIT_OVER_BUDGET}) when ORT p90 latency "
                                                              "is over this budget."),
    weights: Optional[Path] = typer.Option(None, metavar="FILE", help="safetensors weights for a genotype REF."),
    random_init: bool = typer.Option(False, "--random-init", help="Export a genotype REF with untrained weights."),
    batch_sizes: str = typer.Option("1", metavar="N[,N...]", help="Batch sizes to time, comma-separated."),
    threads: str = threads_option("1", several=True),
    runs: int = typer.Option(DEFAULT_RUNS, min=1, help="Timed runs per configuration (after warm-up)."),
    atol: float = typer.Option(DEFAULT_ATOL, help=f"Parity tolerance on logits (max abs difference); over it: "
                                                  f"exit {EXIT_PARITY}."),
    parity_images: int = typer.Option(512, min=1, help="Real test images for the parity check."),
    calibration_images: int = typer.Option(512, min=1, help="Real training images for int8 calibration."),
    dataset: str = dataset_option("for parity, calibration and accuracy"),
    data_dir: Optional[Path] = data_dir_option(),
    as_json: bool = json_option("of the report"),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Export a model to ONNX, check it, prove parity with PyTorch and time it; optionally int8."""
    from menas_zoo.export.bench import check_budget
    from menas_zoo.export.pipeline import ExportOptions, export_ref

    options = ExportOptions(opset=opset, exporter=exporter, dynamic_batch=dynamic_batch, optimize=optimize, int8=int8,
                            batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
                            threads=parse_ints(threads, "--threads"), runs=runs, atol=atol,
                            max_latency_ms=max_latency_ms, fp16=fp16, ort_format=ort_format,
                            calibration_method=calibration_method, providers=providers)
    outcome = export_ref(ref, out, options, weights=weights, random_init=random_init, dataset=dataset,
                         data_dir=data_dir, parity_images=parity_images, calibration_images=calibration_images,
                         offline=hub_offline(offline), endpoint=endpoint, step=_status(as_json))
    if as_json:
        print_json(outcome.report)
    else:
        _print_export(outcome, out)
    if max_latency_ms is not None:
        check_budget(outcome.bench.onnxruntime, max_latency_ms)


def _status(quiet: bool):
    """A spinner on stderr for long steps; nothing under --json, so stdout stays one JSON document."""
    return (lambda _message: contextlib.nullcontext()) if quiet else err_console.status


def _print_export(outcome: ExportOutcome, out: Path) -> None:
    from menas_zoo.export.pipeline import INT8_FILE, ONNX_FILE, REPORT_FILE

    report, bench, parity, comparison = outcome.report, outcome.bench, outcome.parity, outcome.int8
    o, m = report["onnx"], report["model"]
    console.print(f"wrote {out / ONNX_FILE} ({o['size_bytes'] / 1e6:.2f} MB, opset {o['opset']}, "
                  f"{o['exporter']} exporter, "
                  f"input {o['input_shape']}{', ORT-optimized' if o['optimized'] else ''}); "
                  f"params {human(m['params'])}, MACs {human(m['macs'])}", highlight=False)
    console.print(f"parity: {parity.summary()}", highlight=False)
    print_table("latency (ms)", LATENCY_COLUMNS, latency_rows(bench))
    print_machine(bench.fingerprint)
    print_noise_warnings(bench)
    if report.get("fp16"):
        console.print(f"fp16: wrote {out / report['fp16']['path']}; parity "
                      f"{'passed' if report['fp16']['parity']['passed'] else 'FAILED'}: "
                      f"max |logit diff| {report['fp16']['parity']['max_abs_diff']:.2e} (tolerance "
                      f"{report['fp16']['parity']['atol']:.0e}), top-1 agreement "
                      f"{report['fp16']['parity']['top1_agreement']:.2%}", highlight=False)
    if report.get("ort_format"):
        o = report["ort_format"]
        verdicts = ", ".join(f"{ep}: {v}" for ep, v in o["mobile_eps"].items()) or "no verdict"
        console.print(f"ORT Mobile: wrote {out / o['path']} ({o['size_bytes'] / 1e6:.2f} MB); usability check: "
                      f"{verdicts}", highlight=False)
    print_table("per precision (ORT, 1 thread)", PRECISION_COLUMNS, precision_rows(report["precisions"]))
    if comparison is not None:
        c = comparison
        print_table("int8 vs fp32", ["", "fp32", "int8", "change"], [
            ["size", f"{c.fp32_bytes / 1e6:.2f} MB", f"{c.int8_bytes / 1e6:.2f} MB",
             f"{c.int8_bytes / c.fp32_bytes:.2f}x"],
            [f"p50 latency, batch {c.batch_size}", f"{c.fp32_p50_ms:.3f} ms", f"{c.int8_p50_ms:.3f} ms",
             f"{c.speedup:.2f}x faster" if c.speedup >= 1 else f"{1 / c.speedup:.2f}x slower"],
            [f"test accuracy ({c.test_images} images)", f"{c.fp32_accuracy:.4f}", f"{c.int8_accuracy:.4f}",
             f"{c.accuracy_change * 100:+.2f} pts"]])
        if c.layer_errors:
            print_table(f"int8 layers with the most error ({c.calibration_method} calibration; SQNR vs fp32, "
                        "lower is worse)", ["tensor", "SQNR dB"],
                        [[e["tensor"], f"{e['sqnr_db']:.1f}"] for e in c.layer_errors[:5]])
        if c.recommended == "fp32":
            console.print(f"recommended: {ONNX_FILE} (fp32), because " + "; ".join(c.reasons), highlight=False)
        else:
            console.print(f"recommended: {INT8_FILE}", highlight=False)
    console.print(f"report: {out / REPORT_FILE}", highlight=False)


# -- bench -----------------------------------------------------------------------------------------

@command(name="bench")
def bench_command(
    ref: Optional[str] = typer.Argument(None, metavar="REF_OR_ONNX",
                                        help="An .onnx file, or a model REF as for export "
                                             "(optional with --per-block)."),
    batch_sizes: str = typer.Option("1,32", metavar="N[,N...]", help="Batch sizes to time, comma-separated."),
    threads: str = threads_option("1", several=True),
    runs: int = typer.Option(DEFAULT_RUNS, min=1, help="Timed runs per configuration (after warm-up)."),
    warmup: int = typer.Option(DEFAULT_WARMUP, min=0, help="Untimed warm-up runs per configuration."),
    max_latency_ms: Optional[float] = typer.Option(None, help=f"Fail (exit {EXIT_OVER_BUDGET}) when any ORT p90 is "
                                                              "over this budget."),
    weights: Optional[Path] = typer.Option(None, metavar="FILE", help="safetensors weights for a genotype REF."),
    random_init: bool = typer.Option(False, "--random-init", help="Time a genotype REF with untrained weights."),
    exporter: str = typer.Option("dynamo", help="Exporter used when REF is not an .onnx file."),
    providers: Optional[str] = providers_option(),
    per_block: bool = typer.Option(False, "--per-block", help="Build this machine's per-block latency table and "
                                                              "report the predictor's error on sampled genotypes."),
    table: Path = typer.Option(Path("latency_table.json"), metavar="FILE",
                               help="--per-block: table file (extended if it exists)."),
    genotypes: int = typer.Option(20, min=0, help="--per-block: sampled genotypes to measure and predict "
                                                  "(besides REF's, when given)."),
    profile: str = typer.Option("small", metavar="PROFILE", help="--per-block: search profile to sample from."),
    seed: int = typer.Option(0, help="--per-block: first sampling seed."),
    as_json: bool = json_option("instead of tables"),
    offline: bool = offline_option(),
    endpoint: Optional[str] = endpoint_option(),
) -> None:
    """Time a model in ONNX Runtime (and eager PyTorch), or build the per-block latency table."""
    from menas_zoo.edge import resolve_providers
    from menas_zoo.export.bench import budget_verdict, check_budget, check_budget_value
    from menas_zoo.export.pipeline import bench_ref

    check_budget_value(max_latency_ms)
    resolve_providers(providers)
    batch_list, thread_list = parse_ints(batch_sizes, "--batch-sizes"), parse_ints(threads, "--threads")
    if per_block:
        if max_latency_ms is not None:
            raise MenasError("--max-latency-ms applies to one model; leave it out with --per-block")
        _per_block(ref, weights, thread_list, runs, warmup, table, genotypes, profile, seed, as_json,
                   offline=hub_offline(offline), endpoint=endpoint)
        return
    if ref is None:
        raise MenasError("give a model REF or an .onnx file (or --per-block)")
    report, model = bench_ref(ref, batch_sizes=batch_list, threads=thread_list, runs=runs, warmup=warmup,
                              providers=providers, exporter=exporter, weights=weights, random_init=random_init,
                              offline=hub_offline(offline), endpoint=endpoint, step=_status(as_json))
    title = ref if model is None else f"{ref} ({human(genotype_cost(model.genotype).macs)} MACs)"
    verdict = budget_verdict(report.onnxruntime, max_latency_ms) if max_latency_ms is not None else None
    if as_json:
        print_json({**report.as_dict(), "budget": verdict})
    else:
        print_table(f"latency of {title} (ms)", LATENCY_COLUMNS, latency_rows(report))
        print_machine(report.fingerprint)
        print_noise_warnings(report)
    if max_latency_ms is not None:
        check_budget(report.onnxruntime, max_latency_ms)


def _per_block(ref, weights, thread_list, runs, warmup, table_path: Path, n_genotypes, profile, seed,
               as_json, *, offline, endpoint) -> None:
    from menas_zoo.export.latency_table import per_block_table

    if len(thread_list) != 1:
        raise MenasError("--per-block measures one thread count at a time; pass a single --threads value")
    table, evaluation, sampled = per_block_table(ref, table_path, weights=weights, threads=thread_list[0], runs=runs,
                                                 warmup=warmup, genotypes=n_genotypes, profile=profile, seed=seed,
                                                 progress=not as_json, offline=offline, endpoint=endpoint)
    if as_json:
        print_json({"table": str(table_path), "entries": len(table.entries), **evaluation})
        return
    print_table(f"latency table predictor vs measured (p90), batch 1, {thread_list[0]} thread(s)",
                ["genotype", "MACs", "predicted ms", "measured ms", "error"],
                [[_short(r["genotype"]), human(genotype_cost(g).macs), f"{r['predicted_ms']:.3f}",
                  f"{r['measured_ms']:.3f}",
                  f"{r['error_pct']:+.1f}%"] for r, g in zip(evaluation["networks"], sampled)])
    console.print(f"wrote {table_path} ({len(table.entries)} parts); predictor error on {len(sampled)} networks: "
                  f"median {evaluation['median_abs_error_pct']:.1f}%, worst {evaluation['worst_abs_error_pct']:.1f}%, "
                  f"mean signed {evaluation['mean_error_pct']:+.1f}%", highlight=False)
    print_machine(table.meta["machine"])


def _short(compact: str, width: int = 60) -> str:
    return compact if len(compact) <= width else compact[:width - 3] + "..."
