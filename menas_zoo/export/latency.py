"""The latency a search's ``--max-latency-ms`` limit is checked against: one network, batch 1, one thread.

:func:`measure_latency_ms` exports a candidate to ONNX (TorchScript exporter: a search exports many
candidates, and it is about ten times faster than dynamo for the same operators) and times it in ONNX
Runtime; :func:`latency_fn` is what :func:`menas_zoo.search.run_search` uses when a limit is set and no
function is given: that measurement, or a prediction from a per-block latency table when one is named.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from menas_zoo.export.bench import bench_onnx
from menas_zoo.export.onnx import export_onnx

#: timed calls (after warm-up) per candidate; a search measures every child it proposes
SEARCH_RUNS, SEARCH_WARMUP = 50, 10


def measure_latency_ms(model: nn.Module, *, runs: int = SEARCH_RUNS, warmup: int = SEARCH_WARMUP) -> float:
    """p90 of ``runs`` ONNX Runtime calls of ``model`` at batch 1 on one thread (exported to opset 17)."""
    with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        export_onnx(model.cpu().eval(), path, exporter="torchscript", opset=17, dynamic_batch=False, export_batch=1)
        return bench_onnx(path, batch_sizes=(1,), threads=(1,), runs=runs, warmup=warmup)[0].p90_ms


def latency_fn(table: str | Path | None = None, *, runs: int = SEARCH_RUNS) -> Callable[[nn.Module], float]:
    """Model -> ms at batch 1, 1 thread: predicted from the per-block latency ``table`` (a file written by
    ``menas-zoo bench --per-block``; microseconds per candidate), else measured by :func:`measure_latency_ms`."""
    if table is not None:
        from menas_zoo.export.latency_table import LatencyTable

        return _TablePrediction(LatencyTable.load(table))
    return _Measurement(runs)


class _Measurement:
    """A module-level callable (not a closure), so a Ray backend can ship it to its workers."""

    def __init__(self, runs: int) -> None:
        self.runs = runs

    def __call__(self, model: nn.Module) -> float:
        return measure_latency_ms(model, runs=self.runs)


class _TablePrediction:
    def __init__(self, table) -> None:
        self.table = table

    def __call__(self, model: nn.Module) -> float:
        return self.table.predict(model.genotype)[0]
