"""What a latency limit means, defined once for ``export``, ``bench``, a search and the per-block table.

**Latency** is the p90 (:data:`~menas_zoo.export.defaults.LATENCY_PERCENTILE`) of the per-call
milliseconds of ONNX Runtime running a network's ONNX file, after untimed warm-up calls, on one thread
and at batch 1 unless stated. The file is the one ``export`` writes (at ``--opset``, 18 by default) or
``bench`` is given; what the library exports to time (a search's candidates, the table's parts) it
exports at :data:`~menas_zoo.export.defaults.LATENCY_OPSET`, the export's default opset. p90, because a
few calls preempted by other work on the machine cannot move it and a slower network does. Where each
path gets it:

* ``export`` and ``bench`` time the file they wrote or were given; ``--max-latency-ms`` fails on its p90.
* A search measures every candidate: :func:`measure_latency_ms` exports it (static batch 1, TorchScript
  exporter: a search exports many candidates, and it is about ten times faster than dynamo for the same
  operators) and takes the p90 of its calls. :func:`menas_zoo.search.run_search` uses it when a
  ``max_latency_ms`` limit is set and no ``latency_fn`` is given; :func:`latency_fn` makes either.
* The per-block latency table (``latency_table.py``) times each part of a network the same way and
  predicts a network's p90 from its parts' p90s; its report compares that with the network measured here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from menas_zoo.export.bench import onnx_times
from menas_zoo.export.defaults import LATENCY_OPSET, LATENCY_PERCENTILE
from menas_zoo.export.onnx import export_onnx
from menas_zoo.export.runtime import ort_session

#: the exporter of measured candidates and table parts
LATENCY_EXPORTER = "torchscript"
#: timed calls (after warm-up) per candidate; a search measures every child it proposes
SEARCH_RUNS, SEARCH_WARMUP = 100, 10


def latency_statistic(times: np.ndarray) -> float:
    """The latency of a set of per-call milliseconds: their p90."""
    return round(float(np.percentile(times, LATENCY_PERCENTILE)), 4)


def onnx_call_times(module: nn.Module, input_shape: tuple[int, int, int], workdir: str | Path, *, threads: int = 1,
                    runs: int = SEARCH_RUNS, warmup: int = SEARCH_WARMUP,
                    exporter: str = LATENCY_EXPORTER) -> np.ndarray:
    """Per-call ms of ``module`` at batch 1 in ONNX Runtime, exported at :data:`LATENCY_OPSET` with a static
    batch into ``workdir``: one measurement for whole networks and the latency table's parts alike."""
    path = Path(workdir) / "latency.onnx"
    export_onnx(module, path, exporter=exporter, opset=LATENCY_OPSET, dynamic_batch=False, export_batch=1,
                input_shape=input_shape)
    return onnx_times(ort_session(path, threads=threads), batch_size=1, runs=runs, warmup=warmup, source=path)


def measure_latency_ms(model: nn.Module, *, runs: int = SEARCH_RUNS, warmup: int = SEARCH_WARMUP,
                       threads: int = 1) -> float:
    """The latency of ``model`` (a MobileNetMT) at batch 1: the p90 of ``runs`` ONNX Runtime calls."""
    g = model.genotype
    with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
        times = onnx_call_times(model.cpu().eval(), (g.in_chans, g.resolution, g.resolution), tmp, threads=threads,
                                runs=runs, warmup=warmup)
    return latency_statistic(times)


def latency_fn(table: str | Path | None = None, *, runs: int = SEARCH_RUNS) -> Callable[[nn.Module], float]:
    """Model -> latency in ms at batch 1, 1 thread: predicted from the per-block latency ``table`` (a file
    written by ``menas-zoo bench --per-block``; microseconds a candidate), else :func:`measure_latency_ms`."""
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
