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
    defaults.py       default opset, runs, warm-up and parity tolerance (torch-free)
    latency.py        the latency a search's limit is checked against: measured, or predicted from a table
    latency_table.py  per-block latency lookup table for this machine and a predictor built on it

This package depends on the core only (nets, space, data, io); a model reference is resolved by
:func:`menas_zoo.hub.resolve_model`, whose network (with its own mean/std) is handed in. Names are
imported on first use, and ``defaults.py`` holds the default settings without importing torch, so the
CLI's help shows them at no cost.
"""

from menas_zoo.lazy import lazy_attributes

__all__ = ["BenchReport", "DEFAULT_OPSET", "EXPORTERS", "ExportImages", "ExportOptions", "ExportOutcome",
           "ExportResult", "Int8Comparison", "LatencyBudgetError", "LatencyStats", "LatencyTable", "ParityError",
           "ParityResult", "bench_eager", "bench_onnx", "bench_ref", "benchmark", "build_latency_table", "check_budget",
           "check_parity", "compare_int8", "evaluate_predictor", "export_model", "export_onnx", "export_ref",
           "latency_fn", "machine_fingerprint", "measure_latency_ms", "model_images", "onnx_metadata", "ort_session",
           "quantize_int8", "real_images"]

__getattr__, __dir__ = lazy_attributes(globals(), {
    "BenchReport": "menas_zoo.export.bench",
    "LatencyStats": "menas_zoo.export.bench",
    "bench_eager": "menas_zoo.export.bench",
    "bench_onnx": "menas_zoo.export.bench",
    "benchmark": "menas_zoo.export.bench",
    "check_budget": "menas_zoo.export.bench",
    "machine_fingerprint": "menas_zoo.export.bench",
    "LatencyBudgetError": "menas_zoo.errors",
    "ParityError": "menas_zoo.errors",
    "latency_fn": "menas_zoo.export.latency",
    "measure_latency_ms": "menas_zoo.export.latency",
    "LatencyTable": "menas_zoo.export.latency_table",
    "build_latency_table": "menas_zoo.export.latency_table",
    "evaluate_predictor": "menas_zoo.export.latency_table",
    "DEFAULT_OPSET": "menas_zoo.export.defaults",
    "EXPORTERS": "menas_zoo.export.defaults",
    "ExportResult": "menas_zoo.export.onnx",
    "export_onnx": "menas_zoo.export.onnx",
    "ExportImages": "menas_zoo.export.pipeline",
    "ExportOptions": "menas_zoo.export.pipeline",
    "ExportOutcome": "menas_zoo.export.pipeline",
    "export_model": "menas_zoo.export.pipeline",
    "export_ref": "menas_zoo.export.pipeline",
    "bench_ref": "menas_zoo.export.pipeline",
    "onnx_metadata": "menas_zoo.export.pipeline",
    "ParityResult": "menas_zoo.export.parity",
    "check_parity": "menas_zoo.export.parity",
    "real_images": "menas_zoo.export.parity",
    "model_images": "menas_zoo.export.parity",
    "Int8Comparison": "menas_zoo.export.quantize",
    "compare_int8": "menas_zoo.export.quantize",
    "quantize_int8": "menas_zoo.export.quantize",
    "ort_session": "menas_zoo.export.runtime",
})
