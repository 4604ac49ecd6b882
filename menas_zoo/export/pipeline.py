"""The whole export of one model into one folder: ONNX, [int8], [ORT optimization], parity, latency, report.

    out/model.onnx          fp32, single file (ORT-optimized with ``optimize``)
    out/model.int8.onnx     static int8 QDQ (with ``int8``)
    out/model.fp16.onnx     float16, float32 in/out (with ``fp16``)
    out/model.ort           ORT Mobile format (with ``ort_format``)
    out/export_report.json  opset, exporter, versions, sizes, parity, latency, budget, int8 verdict

Work happens in a hidden staging folder inside ``out``; files are moved into place only once parity has
passed, the old report removed first and the new one moved in last (it vouches for the files beside
it). A failed export leaves ``out`` as it was; a killed one leaves no report that lies, and its staging
folder is removed by the next export.
A latency budget that is blown does not undo the export (the files are sound); the report records the
verdict and the caller decides what to do with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import torch

from menas_zoo.artifact import INT8_FILE, ONNX_FILE, package_version
from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.data import ImageDataset
from menas_zoo.edge import metadata_props, resolve_providers
from menas_zoo.export.bench import (DEFAULT_RUNS, DEFAULT_WARMUP, BenchReport, benchmark, budget_verdict,
                                    check_budget_value, precision_summaries)
from menas_zoo.export.onnx import DEFAULT_OPSET, check_opset, embed_metadata, export_onnx
from menas_zoo.export.parity import DEFAULT_ATOL, ParityResult, check_parity, model_images, real_images
from menas_zoo.export.quantize import Int8Comparison, calibration_method, compare_int8, layer_errors, quantize_int8
from menas_zoo.export.variants import check_fp16_parity, convert_fp16, convert_ort_format, mobile_usability
from menas_zoo.export.runtime import optimize_offline
from menas_zoo.io import remove_stale_temporaries, temporary_prefix, write_json_atomic
from menas_zoo.nets import MobileNetMT

if TYPE_CHECKING:
    from menas_zoo.hub.resolve import ModelSource  # the hub depends on huggingface_hub; an export need not

REPORT_FILE = "export_report.json"
FP16_FILE, ORT_FILE = "model.fp16.onnx", "model.ort"
PRECISION_BATCHES = (1, 32)  # the batch sizes a model card shows per precision
EXPORT_BATCH, PARITY_BATCH = 2, 16  # traced at one batch size, proved at another


@dataclass
class ExportImages:
    """Real, normalized images: parity (test split), calibration (training split), accuracy (test split + labels)."""

    parity: torch.Tensor
    parity_raw: torch.Tensor | None = None  # the same images as [0, 1] pixels: ORT normalizes them from metadata
    calibration: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None
    accuracy_labels: torch.Tensor | None = None
    dataset: str = "fashion-mnist"

    @classmethod
    def load(cls, source: ModelSource, dataset: str, data_dir: str | Path | None, *, parity_images: int = 512,
             calibration_images: int = 512, int8: bool = False) -> tuple[ExportImages, ImageDataset]:
        """The images an export of ``source`` needs, from the named dataset, normalized with the model's own
        mean/std when it carries them (else the dataset's), and the test split they came from."""
        g = source.model.genotype
        parity, test_data = model_images(dataset, data_dir, g, parity_images, mean=source.mean, std=source.std)
        raw = real_images(test_data, len(parity), mean=[0.0] * g.in_chans, std=[1.0] * g.in_chans)
        images = cls(parity=parity, parity_raw=raw, dataset=dataset)
        if int8:
            images.calibration, _ = model_images(dataset, data_dir, g, calibration_images, mean=source.mean,
                                                 std=source.std, split="train")
            images.accuracy, _ = model_images(dataset, data_dir, g, len(test_data), mean=source.mean, std=source.std)
            images.accuracy_labels = test_data.labels
        return images, test_data


@dataclass
class ExportOptions:
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    dynamic_batch: bool = True
    optimize: bool = False
    int8: bool = False
    batch_sizes: Sequence[int] = (1,)
    threads: Sequence[int] = (1,)
    runs: int = DEFAULT_RUNS
    atol: float = DEFAULT_ATOL
    max_latency_ms: float | None = None
    fp16: bool = False
    ort_format: bool = False
    calibration_method: str = "minmax"
    providers: str | None = None  # for timing; parity always runs on the CPU provider

    def check(self) -> None:
        check_opset(self.opset, self.exporter)
        check_budget_value(self.max_latency_ms)
        calibration_method(self.calibration_method)
        resolve_providers(self.providers)
        if self.optimize and (self.fp16 or self.ort_format):
            raise MenasError("--optimize writes an ORT-specific graph; fp16 and ORT-format files are made from the "
                             "portable one: leave out --optimize")


@dataclass
class ExportOutcome:
    report: dict[str, Any]  # exactly what export_report.json holds
    bench: BenchReport
    parity: ParityResult
    int8: Int8Comparison | None


def onnx_metadata(source: ModelSource, data: ImageDataset) -> dict[str, str]:
    """What the ONNX file must carry to be used alone: the normalization parity used, labels, input, provenance."""
    g = source.model.genotype
    labels = source.labels or (data.classes if len(data.classes) == g.num_classes
                               else [str(i) for i in range(g.num_classes)])
    return metadata_props(labels=labels, mean=source.mean if source.mean is not None else data.mean,
                          std=source.std if source.std is not None else data.std, channels=g.in_chans,
                          resolution=g.resolution, genotype=g.to_dict(), version=package_version(),
                          source={"ref": shareable_ref(source), "revision": source.revision,
                                  "sha256": source.weights_sha256})


def shareable_ref(source: ModelSource) -> str:
    """The ref as a file may carry it to other machines: a local artifact folder by its name alone (the
    weights' sha256 beside it identifies them), never the exporting machine's directory path."""
    return Path(source.ref).name if source.kind == "artifact" else source.ref


def prepare_out_dir(out: Path) -> None:
    """Fail early (before minutes of work) when ``out`` cannot take our files."""
    if out.exists() and not out.is_dir():
        raise MenasError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise MenasError(f"cannot write to {out}: {exc.strerror or exc}") from None


def replace_outputs(staging: Path, out: Path) -> None:
    """Swap a finished export in as a whole: the old report goes first, the new one comes last.

    The report vouches for the files beside it, so at no moment does one sit beside files it does not
    describe: a kill half-way leaves model files without a report (and its staging folder, which the
    next export removes), never a new model under an old report. A stale int8, fp16 or ORT file of an
    earlier export is removed rather than left to mislead.
    """
    (out / REPORT_FILE).unlink(missing_ok=True)
    for name in (ONNX_FILE, INT8_FILE, FP16_FILE, ORT_FILE):
        if (staging / name).exists():
            os.replace(staging / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)
    os.replace(staging / REPORT_FILE, out / REPORT_FILE)


def export_model(model: MobileNetMT, out: str | Path, images: ExportImages, options: ExportOptions | None = None, *,
                 model_info: dict[str, Any] | None = None, onnx_metadata: dict[str, str] | None = None,
                 step: Callable[[str], ContextManager] = lambda _: contextlib.nullcontext()) -> ExportOutcome:
    """Export ``model`` into ``out``; the outcome holds the report written there and the measurements
    behind it. ``onnx_metadata`` goes into every ONNX file's ``metadata_props`` (see :mod:`menas_zoo.edge`).
    ``step(description)`` wraps each long stage, for progress display."""
    options = options or ExportOptions()
    options.check()
    if options.int8 and (images.calibration is None or images.accuracy is None or images.accuracy_labels is None):
        raise MenasError("int8 needs calibration images and labelled accuracy images")
    out = Path(out)
    prepare_out_dir(out)
    remove_stale_temporaries(out, "export", legacy_prefix=".export-")  # left by an export that was killed
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix("export"), suffix=".tmp", dir=out))
    try:
        onnx_path = staging / ONNX_FILE
        with step(f"exporting with the {options.exporter} exporter, opset {options.opset}"):
            result = export_onnx(model, onnx_path, opset=options.opset, exporter=options.exporter,
                                 dynamic_batch=options.dynamic_batch, export_batch=EXPORT_BATCH)
        if onnx_metadata:
            embed_metadata(onnx_path, onnx_metadata)
            result.size_bytes = onnx_path.stat().st_size
        int8_path = None
        if options.int8:
            with step(f"quantizing to int8 (static QDQ, {options.calibration_method} calibration on training images)"):
                int8_path = quantize_int8(onnx_path, staging / INT8_FILE, images.calibration,
                                          method=options.calibration_method)
                if onnx_metadata:
                    embed_metadata(int8_path, onnx_metadata)
        if options.optimize:  # after quantization: the quantizer wants the portable graph, not ORT's fused one
            with step("optimizing the graph with ONNX Runtime"):
                optimized = staging / "model.opt.onnx"
                optimize_offline(onnx_path, optimized)
                optimized.replace(onnx_path)
                result.optimized, result.size_bytes = True, onnx_path.stat().st_size
        # A fixed-batch file only runs at its export batch: parity and timing then have no other choice.
        batch_sizes = list(options.batch_sizes) if options.dynamic_batch else [EXPORT_BATCH]
        with step(f"checking parity on {len(images.parity)} real images"):
            parity = check_parity(model, onnx_path, images.parity,
                                  batch_size=PARITY_BATCH if options.dynamic_batch else EXPORT_BATCH,
                                  export_batch=EXPORT_BATCH if options.dynamic_batch else None, atol=options.atol,
                                  raw_images=images.parity_raw if onnx_metadata else None)
        with step(f"timing ONNX Runtime and PyTorch eager ({options.runs} runs per configuration)"):
            bench = benchmark(onnx_path, model, batch_sizes=batch_sizes, threads=options.threads, runs=options.runs,
                              providers=options.providers)
        extra = deployment_variants(model, staging, images, options, step,
                                    parity_batch=PARITY_BATCH if options.dynamic_batch else EXPORT_BATCH,
                                    raw_parity=bool(onnx_metadata))
        comparison = None
        if int8_path is not None:
            with step("comparing int8 with fp32 (size, latency, test accuracy)"):
                comparison = compare_int8(onnx_path, int8_path, images.accuracy, images.accuracy_labels,
                                          threads=options.threads[0], runs=options.runs)
                comparison.calibration_method = options.calibration_method
            with step("measuring per-layer int8 error (SQNR against fp32)"):
                comparison.layer_errors = layer_errors(onnx_path, int8_path, images.calibration[:64])
        cost = genotype_cost(model.genotype)
        result.path = ONNX_FILE
        report = {
            "model": {**(model_info or {}), "genotype": model.genotype.to_dict(), "params": cost.params,
                      "macs": cost.macs},
            "onnx": {**result.as_dict(), "runtime": "onnxruntime only (contrib ops)" if options.optimize else "any"},
            "parity": {**parity.as_dict(), "dataset": images.dataset, "split": "test"},
            "latency": bench.as_dict(),
            "budget": budget_verdict(bench.onnxruntime, options.max_latency_ms) if options.max_latency_ms else None,
            "int8": {**comparison.as_dict(), "path": INT8_FILE, "dataset": images.dataset} if comparison else None,
            "recommended": INT8_FILE if comparison and comparison.recommended == "int8" else ONNX_FILE,
            **extra,
        }
        with step("measuring latency and memory per precision"):
            report["precisions"] = time_precisions(staging, options)
        write_json_atomic(staging / REPORT_FILE, report)
        replace_outputs(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportOutcome(report, bench, parity, comparison)


def deployment_variants(model: MobileNetMT, staging: Path, images: ExportImages, options: ExportOptions,
                        step: Callable[[str], ContextManager], *, parity_batch: int,
                        raw_parity: bool) -> dict[str, Any]:
    """The fp16 and ORT-format files (when asked) and their report entries."""
    entries: dict[str, Any] = {"fp16": None, "ort_format": None}
    onnx_path = staging / ONNX_FILE
    if options.fp16:
        with step(f"converting to fp16 and checking its parity on {len(images.parity)} real images"):
            fp16_path = convert_fp16(onnx_path, staging / FP16_FILE)
            try:
                parity = check_fp16_parity(model, fp16_path, images.parity, batch_size=parity_batch,
                                           raw_images=images.parity_raw if raw_parity else None)
            except MenasError:
                fp16_path.unlink(missing_ok=True)
                raise
        entries["fp16"] = {"path": FP16_FILE, "size_bytes": fp16_path.stat().st_size, "parity": parity.as_dict()}
    if options.ort_format:
        with step("checking mobile usability and writing the ORT-format file"):
            usability = mobile_usability(onnx_path)
            ort_path = convert_ort_format(onnx_path, staging / ORT_FILE)
        entries["ort_format"] = {"path": ORT_FILE, "size_bytes": ort_path.stat().st_size, "optimization": "basic",
                                 **usability}
    return entries


def time_precisions(staging: Path, options: ExportOptions) -> dict[str, Any]:
    """p50/p90 and images/s at batch 1 and 32 and peak memory, for every precision written, the files
    timed in alternating rounds (:func:`precision_summaries`)."""
    batches = PRECISION_BATCHES if options.dynamic_batch else (EXPORT_BATCH,)
    names = {precision: name for precision, name in (("fp32", ONNX_FILE), ("fp16", FP16_FILE), ("int8", INT8_FILE))
             if (staging / name).exists()}
    measured = precision_summaries({precision: staging / name for precision, name in names.items()},
                                   batch_sizes=batches, threads=options.threads[0], runs=options.runs,
                                   providers=options.providers)
    return {precision: {"path": names[precision], **measured[precision]} for precision in names}


def export_ref(ref: str, out: str | Path, options: ExportOptions | None = None, *, weights: str | Path | None = None,
               random_init: bool = False, dataset: str = "fashion-mnist", data_dir: str | Path | None = None,
               parity_images: int = 512, calibration_images: int = 512, offline: bool | None = None,
               endpoint: str | None = None,
               step: Callable[[str], ContextManager] = lambda _: contextlib.nullcontext()) -> ExportOutcome:
    """``menas-zoo export``: resolve ``ref`` (:func:`menas_zoo.hub.resolve.resolve_model`: a zoo name,
    ``hf-hub:`` ref, artifact folder, or a genotype with ``weights`` or ``random_init``), read the images
    its export needs, and :func:`export_model` it into ``out`` with the metadata that lets the ONNX file be
    used alone. Options and ``out`` are checked before the model is loaded: a mistake costs no time."""
    from menas_zoo.hub.resolve import resolve_model

    options = options or ExportOptions()
    options.check()
    source = resolve_model(ref, weights=weights, random_init=random_init, offline=offline, endpoint=endpoint)
    prepare_out_dir(Path(out))
    images, test_data = ExportImages.load(source, dataset, data_dir, parity_images=parity_images,
                                          calibration_images=calibration_images, int8=options.int8)
    return export_model(source.model, out, images, options, model_info={"ref": ref, "source": source.kind},
                        onnx_metadata=onnx_metadata(source, test_data), step=step)


def bench_ref(ref: str, *, batch_sizes: Sequence[int] = (1, 32), threads: Sequence[int] = (1,),
              runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, providers: str | None = None,
              exporter: str = "dynamo", weights: str | Path | None = None, random_init: bool = False,
              offline: bool | None = None, endpoint: str | None = None,
              step: Callable[[str], ContextManager] = lambda _: contextlib.nullcontext()
              ) -> tuple[BenchReport, MobileNetMT | None]:
    """``menas-zoo bench``: an .onnx file timed in ONNX Runtime as it is, or a model ref
    (:func:`menas_zoo.hub.resolve.resolve_model`) exported to a temporary file and timed beside eager
    PyTorch. Returns the report and the network (None for a file)."""
    from menas_zoo.export.runtime import ort_session
    from menas_zoo.hub.resolve import resolve_model
    from menas_zoo.predict import is_onnx_ref

    timing = {"batch_sizes": batch_sizes, "threads": threads, "runs": runs, "warmup": warmup, "providers": providers}
    if is_onnx_ref(ref):  # a file is timed as it is, as predict runs it
        ort_session(ref, providers=providers)  # a file that does not load fails here, in one line
        return benchmark(ref, None, **timing), None
    check_opset(DEFAULT_OPSET, exporter)
    source = resolve_model(ref, weights=weights, random_init=random_init, offline=offline, endpoint=endpoint)
    with tempfile.TemporaryDirectory(prefix="menas-zoo-bench-") as tmp:
        with step(f"exporting with the {exporter} exporter"):
            path = export_onnx(source.model, Path(tmp) / ONNX_FILE, exporter=exporter).path
        with step(f"timing ({runs} runs per configuration)"):
            report = benchmark(path, source.model, **timing)
    return report, source.model
