"""Export: ONNX with parity and latency checks, int8, and a per-device latency table.

    pipeline.py       one model -> one folder: ONNX, [int8], [ORT optimization], parity, latency, report
    onnx.py           nn.Module -> single-file ONNX (explicit exporter, opset, dynamic batch, full check)
    runtime.py        ONNX Runtime sessions with pinned threads; a file that does not load is one clear error
    parity.py         PyTorch vs ONNX Runtime logits on real images at another batch size
    bench.py          latency (warm-up, timed runs, percentiles) in ORT and eager PyTorch, machine fingerprint,
                      latency budget
    quantize.py       static int8 (QDQ, per-channel weights) calibrated on real images, compared with fp32,
                      with a choice of calibration method and per-layer error
    variants.py       fp16 ONNX (own parity tolerance) and ORT Mobile's .ort file with ORT's usability check
    latency_table.py  per-block latency lookup table for this machine and a predictor built on it

This package depends on the core only (nets, space, data, io); the CLI resolves a model reference
and hands the network in.
"""

from menas_zoo.export.bench import (BenchReport, LatencyBudgetError, LatencyStats, bench_eager, bench_onnx,
                                    benchmark, check_budget, machine_fingerprint)
from menas_zoo.export.latency_table import LatencyTable, build_latency_table, evaluate_predictor
from menas_zoo.export.onnx import DEFAULT_OPSET, EXPORTERS, ExportResult, export_onnx
from menas_zoo.export.pipeline import ExportImages, ExportOptions, ExportOutcome, export_model
from menas_zoo.export.parity import ParityError, ParityResult, check_parity, real_images
from menas_zoo.export.quantize import Int8Comparison, compare_int8, quantize_int8
from menas_zoo.export.runtime import ort_session

__all__ = ["BenchReport", "DEFAULT_OPSET", "EXPORTERS", "ExportImages", "ExportOptions", "ExportOutcome",
           "ExportResult", "Int8Comparison", "LatencyBudgetError", "LatencyStats", "LatencyTable", "ParityError",
           "ParityResult", "bench_eager", "bench_onnx", "benchmark", "build_latency_table", "check_budget",
           "check_parity", "compare_int8", "evaluate_predictor", "export_model", "export_onnx", "machine_fingerprint",
           "ort_session", "quantize_int8", "real_images"]
