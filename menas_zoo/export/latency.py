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
* :class:`PairedLatency` measures a candidate against a reference network instead (alternating rounds,
  the median within-round p50 ratio, in the reference's ms): a limit of "faster than the reference on
  this machine" that a drifting machine load cannot move.
* The per-block latency table (``latency_table.py``) times each part of a network the same way and
  predicts a network's p90 from its parts' p90s; its report compares that with the network measured here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from menas_zoo.export.bench import best_of_rounds, interleaved_rounds, onnx_times, paired_ratio
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
    path = export_for_timing(module, Path(workdir) / "latency.onnx", input_shape, exporter=exporter)
    return onnx_times(ort_session(path, threads=threads), batch_size=1, runs=runs, warmup=warmup, source=path)


def export_for_timing(module: nn.Module, path: Path, input_shape: tuple[int, int, int], *,
                      exporter: str = LATENCY_EXPORTER) -> Path:
    """The file the library times: ``module`` at :data:`LATENCY_OPSET`, a static batch of 1."""
    export_onnx(module, path, exporter=exporter, opset=LATENCY_OPSET, dynamic_batch=False, export_batch=1,
                input_shape=input_shape)
    return path


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


class PairedLatency:
    """Latency against a reference network, in the reference's milliseconds: the candidate and the reference
    run in alternating rounds (:func:`~menas_zoo.export.bench.interleaved_rounds`), and the median of their
    per-round p50 ratio (:func:`~menas_zoo.export.bench.paired_ratio`) scales ``reference_ms``. A search
    with ``max_latency_ms=reference_ms`` then keeps the candidates faster than the reference on this
    machine: the ratio cancels a load that drifts between candidates, which an absolute limit would
    count. ``reference_ms`` is :func:`reference_latency_ms` of the reference, measured once. Picklable,
    so a Ray backend can ship it to its workers."""

    def __init__(self, reference: nn.Module, reference_ms: float, *, rounds: int = 3, runs: int = SEARCH_RUNS):
        self.reference, self.reference_ms = reference.cpu().eval(), reference_ms
        self.rounds, self.runs = rounds, runs
        self._reference_file: bytes | None = None  # exported once; bytes travel to Ray workers, paths do not

    def __call__(self, model: nn.Module) -> float:
        with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
            reference = Path(tmp) / "reference.onnx"
            if self._reference_file is None:
                export_for_timing(self.reference, reference, _input_shape(self.reference))
                self._reference_file = reference.read_bytes()
            else:
                reference.write_bytes(self._reference_file)
            paths = {"model": export_for_timing(model.cpu().eval(), Path(tmp) / "model.onnx", _input_shape(model)),
                     "reference": reference}
            measured = interleaved_rounds(paths, rounds=self.rounds, runs=self.runs, warmup=SEARCH_WARMUP)
        ratio, _ = paired_ratio(measured["model"], measured["reference"])
        return round(ratio * self.reference_ms, 4)


def reference_latency_ms(reference: nn.Module, *, rounds: int = 3, runs: int = SEARCH_RUNS) -> float:
    """The p50 (ms, batch 1, 1 thread) of ``reference``'s best round: what :class:`PairedLatency` scales."""
    with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
        path = export_for_timing(reference.cpu().eval(), Path(tmp) / "reference.onnx", _input_shape(reference))
        return round(best_of_rounds({"reference": path}, rounds=rounds, runs=runs, warmup=SEARCH_WARMUP)
                     ["reference"].p50_ms, 4)


def _input_shape(model: nn.Module) -> tuple[int, int, int]:
    g = model.genotype
    return g.in_chans, g.resolution, g.resolution


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
