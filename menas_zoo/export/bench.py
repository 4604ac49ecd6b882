"""Latency: ONNX Runtime and eager PyTorch, timed the same way in the same run, and a budget gate.

Each configuration (batch size x thread count) gets a warm-up, then ``runs`` timed calls on the same
pre-built input; the report gives p50/p90/p99, mean and the stdev as a percentage of the mean (how noisy
the machine was), with a fingerprint of the machine and library versions, because a latency number
without them is not reproducible. The budget is checked on p90, which a few outliers cannot move but
a regression can.
"""

from __future__ import annotations

import copy
import gc
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from menas_zoo.errors import LatencyBudgetError, MenasError, first_line
from menas_zoo.export.defaults import DEFAULT_RUNS, DEFAULT_WARMUP
from menas_zoo.export.runtime import ort_session

PRECISION_ROUNDS = 3  # alternating rounds behind a card's per-precision numbers


@dataclass
class LatencyStats:
    runtime: str  # "onnxruntime" | "pytorch-eager"
    batch_size: int
    threads: int
    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_pct: float

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_s": self.images_per_s}

    @property
    def images_per_s(self) -> float:
        """Throughput at p50: images of this batch size per second."""
        return round(self.batch_size / (self.p50_ms / 1000), 1) if self.p50_ms > 0 else float("inf")

    @property
    def label(self) -> str:
        return f"{self.runtime} batch {self.batch_size}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def time_calls(fn: Callable[[], object], *, runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones (GC off while timing,
    so a collection triggered by someone else's garbage is not billed to the model)."""
    if runs < 1 or warmup < 0:
        raise MenasError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            start = time.perf_counter_ns()
            fn()
            times[i] = (time.perf_counter_ns() - start) / 1e6
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(times: np.ndarray, *, runtime: str, batch_size: int, threads: int, warmup: int) -> LatencyStats:
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    mean = float(times.mean())
    return LatencyStats(runtime=runtime, batch_size=batch_size, threads=threads, runs=len(times), warmup=warmup,
                        p50_ms=round(float(p50), 4), p90_ms=round(float(p90), 4), p99_ms=round(float(p99), 4),
                        mean_ms=round(mean, 4), stdev_pct=round(float(times.std()) / mean * 100, 1))


def onnx_input_shape(path: str | Path) -> tuple[str, list[int | str]]:
    session = ort_session(path)
    inp = session.get_inputs()[0]
    return inp.name, list(inp.shape)


def onnx_times(session, *, batch_size: int, runs: int, warmup: int, source: str | Path = "model") -> np.ndarray:
    """Raw per-call milliseconds of an ORT session on a random input of ``batch_size``."""
    inp = session.get_inputs()[0]
    shape = _concrete_shape(inp.shape, batch_size, source)
    feed = {inp.name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    try:
        session.run(None, feed)
    except Exception as exc:
        raise MenasError(f"{source} cannot run at batch {batch_size}: {first_line(exc)}") from None
    return time_calls(lambda: session.run(None, feed), runs=runs, warmup=warmup)


def bench_onnx(path: str | Path, *, batch_sizes: Iterable[int] = (1,), threads: Iterable[int] = (1,),
               runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
               providers: str | Sequence[str] | None = None) -> list[LatencyStats]:
    """ORT latency of ``path`` for every (batch size, threads) pair; the model needs a dynamic batch
    axis for batch sizes other than the one it was exported with."""
    results = []
    for n_threads in threads:
        session = ort_session(path, threads=n_threads, providers=providers)
        for batch in batch_sizes:
            times = onnx_times(session, batch_size=batch, runs=runs, warmup=warmup, source=path)
            results.append(summarize(times, runtime="onnxruntime", batch_size=batch, threads=n_threads, warmup=warmup))
    return results


def interleaved_rounds(paths: dict[str, str | Path], *, rounds: int = 3, batch_size: int = 1, threads: int = 1,
                       runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP) -> dict[str, list[LatencyStats]]:
    """ORT latency of several files measured in ``rounds`` that alternate them (a, b, c, a, b, c, ...):
    each file's stats, round by round, so that files can be compared within a round."""
    measured: dict[str, list[LatencyStats]] = {key: [] for key in paths}
    for _ in range(rounds):
        for key, path in paths.items():
            (stats,) = bench_onnx(path, batch_sizes=(batch_size,), threads=(threads,), runs=runs, warmup=warmup)
            measured[key].append(stats)
    return measured


def best_of_rounds(paths: dict[str, str | Path], **kwargs) -> dict[str, LatencyStats]:
    """ORT latency of several files measured in alternating rounds (:func:`interleaved_rounds`); each keeps the
    round with its lowest p50, so a burst of load from elsewhere during one file's turn does not set its number."""
    return {key: min(stats, key=lambda s: s.p50_ms) for key, stats in interleaved_rounds(paths, **kwargs).items()}


def paired_ratio(a: Sequence[LatencyStats], b: Sequence[LatencyStats]) -> tuple[float, int]:
    """``a``'s p50 against ``b``'s, both measured in the same alternating rounds: the median of the per-round
    ratios a / b, and in how many rounds ``a`` was the faster. Comparing within a round cancels a machine
    that is slower in one round than in another; the median ignores a burst of load in one round."""
    if not a or len(a) != len(b):
        raise ValueError(f"paired rounds needed, got {len(a)} and {len(b)}")
    ratios = [x.p50_ms / y.p50_ms for x, y in zip(a, b)]
    return float(np.median(ratios)), sum(r < 1.0 for r in ratios)


def paired_verdict(a: Sequence[LatencyStats], b: Sequence[LatencyStats], *, alpha: float = 0.05) -> dict:
    """Is ``a`` faster than ``b``, measured in the same alternating rounds? ``"faster"`` (or ``"slower"``)
    only when a one-sided sign test over the rounds says that ``a`` won (or lost) more rounds than a fair
    coin would, at level ``alpha``; otherwise ``"tie"``: a ratio near 1 whose sign flips between rounds
    is noise of the machine, not a difference. Also the median ratio and the rounds won
    (:func:`paired_ratio`) and the test's p-value for the verdict given (the smaller tail for a tie).
    Five rounds can reach p = 1/32; three never go below 1/8, so a tie is all they can say."""
    ratio, wins = paired_ratio(a, b)
    losses = sum(x.p50_ms > y.p50_ms for x, y in zip(a, b))
    rounds = len(a)
    p_faster, p_slower = sign_test(wins, rounds), sign_test(losses, rounds)
    verdict = "faster" if p_faster < alpha else "slower" if p_slower < alpha else "tie"
    return {"p50_ratio": round(ratio, 4), "faster_rounds": wins, "rounds": rounds, "verdict": verdict,
            "sign_p": round(min(p_faster, p_slower), 4)}


def sign_test(successes: int, trials: int) -> float:
    """One-sided sign test: the chance of ``successes`` or more in ``trials`` fair coin flips."""
    return sum(math.comb(trials, k) for k in range(successes, trials + 1)) / 2 ** trials


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """Two classifiers on the same images (right or wrong per image): the images only ``a`` gets right, those
    only ``b`` gets right, and the exact two-sided McNemar p-value (a sign test on those images), which says
    whether the accuracy difference is more than the luck of which images were drawn."""
    only_a = sum(bool(x) and not y for x, y in zip(a, b, strict=True))
    only_b = sum(bool(y) and not x for x, y in zip(a, b, strict=True))
    tail = sign_test(max(only_a, only_b), only_a + only_b)  # the rarer side's tail: P(X <= min) = P(X >= max)
    return only_a, only_b, min(1.0, 2 * tail)


def _concrete_shape(shape: list, batch: int, path) -> list[int]:
    if isinstance(shape[0], int) and shape[0] != batch:
        raise MenasError(f"{path} has a fixed batch size of {shape[0]}; "
                         f"export with a dynamic batch to time batch {batch}")
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise MenasError(f"{path} has symbolic dimensions besides the batch ({shape}); cannot pick an input")
    return [batch, *rest]


def bench_eager(model: nn.Module, input_shape: tuple[int, int, int], *, batch_sizes: Iterable[int] = (1,),
                threads: Iterable[int] = (1,), runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                channels_last: bool = True) -> list[LatencyStats]:
    """Eager PyTorch latency under ``torch.inference_mode``: the baseline a user gets without exporting.
    channels_last by default, as menas-zoo trains and evaluates (the faster layout on CPU)."""
    net = copy.deepcopy(model).float().cpu().eval()  # .to(channels_last) below is in place
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    previous = torch.get_num_threads()
    results = []
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for batch in batch_sizes:
                x = torch.randn(batch, *input_shape).contiguous(memory_format=memory_format)
                with torch.inference_mode():
                    times = time_calls(partial(net, x), runs=runs, warmup=warmup)
                results.append(summarize(times, runtime="pytorch-eager", batch_size=batch, threads=n_threads,
                                         warmup=warmup))
    finally:
        torch.set_num_threads(previous)
    return results


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint() -> dict:
    """Where a latency was measured: CPU, cores, OS, library versions, and the load when it started
    (a loaded machine explains a noisy number)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "load_average": load,
    }


@dataclass
class BenchReport:
    fingerprint: dict
    onnxruntime: list[LatencyStats]
    eager: list[LatencyStats] = field(default_factory=list)

    def eager_for(self, stats: LatencyStats) -> LatencyStats | None:
        return next((e for e in self.eager if (e.batch_size, e.threads) == (stats.batch_size, stats.threads)), None)

    def as_dict(self) -> dict:
        rows = []
        for s in self.onnxruntime:
            eager = self.eager_for(s)
            rows.append({**s.as_dict(), "eager_p50_ms": eager.p50_ms if eager else None,
                         "speedup_vs_eager_p50": round(eager.p50_ms / s.p50_ms, 2) if eager and s.p50_ms else None})
        return {"machine": self.fingerprint, "onnxruntime": rows, "eager": [e.as_dict() for e in self.eager],
                "warnings": noise_warnings(self)}


def benchmark(onnx_path: str | Path, model: nn.Module | None = None, *, batch_sizes: Iterable[int] = (1,),
              threads: Iterable[int] = (1,), runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
              providers: str | Sequence[str] | None = None) -> BenchReport:
    """ORT latency of ``onnx_path`` and, when the PyTorch ``model`` is given, its eager latency in the same run."""
    batch_sizes, threads = list(batch_sizes), list(threads)
    for b in batch_sizes:
        if b < 1:
            raise MenasError(f"batch sizes must be at least 1, got {b}")
    fingerprint = {**machine_fingerprint(), "providers": ort_session(onnx_path, providers=providers).get_providers()}
    onnx_stats = bench_onnx(onnx_path, batch_sizes=batch_sizes, threads=threads, runs=runs, warmup=warmup,
                            providers=providers)
    eager = []
    if model is not None:
        _, shape = onnx_input_shape(onnx_path)
        eager = bench_eager(model, tuple(shape[1:]), batch_sizes=batch_sizes, threads=threads, runs=runs,
                            warmup=warmup)
    return BenchReport(fingerprint, onnx_stats, eager)


#: A timing is not trusted when its stdev is over this share of the mean, or p90 is this much over p50.
NOISY_STDEV_PCT, NOISY_P90_OVER_P50 = 25.0, 1.5


def noise_warnings(report: BenchReport) -> list[str]:
    """Why the numbers of ``report`` may not be trustworthy (empty when they look clean)."""
    warnings = []
    for s in report.onnxruntime + report.eager:
        if s.stdev_pct > NOISY_STDEV_PCT or s.p90_ms > NOISY_P90_OVER_P50 * s.p50_ms:
            warnings.append(f"{s.label}: timing is noisy (stdev {s.stdev_pct:.0f}% of the mean, p90 "
                            f"{s.p90_ms / s.p50_ms:.2f}x p50); rerun on a quiet machine or with more --runs")
    fp = report.fingerprint
    load, cores = fp.get("load_average"), fp.get("usable_cores") or 1
    if load and load[0] > 0.75 * cores:
        warnings.append(f"the machine was loaded (1-minute load average {load[0]} on {cores} usable cores); "
                        "latency is likely overstated")
    return warnings


_PEAK_MEMORY_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
def high_water_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
before = high_water_kb()
opts = ort.SessionOptions()
opts.intra_op_num_threads = int(sys.argv[3])
session = ort.InferenceSession(sys.argv[1], sess_options=opts, providers=sys.argv[4].split(","))
inp = session.get_inputs()[0]
session.run(None, {inp.name: np.zeros([int(sys.argv[2]), *inp.shape[1:]], np.float32)})
print(high_water_kb() - before)
"""


def peak_memory_mb(path: str | Path, *, batch_size: int = 1, threads: int = 1,
                   providers: str | Sequence[str] | None = None) -> float | None:
    """Peak resident memory (MB) that loading ``path`` and running one batch adds to a fresh process,
    beyond the interpreter and onnxruntime themselves; None where /proc is not available."""
    if not Path("/proc/self/status").exists():
        return None
    from menas_zoo.edge import resolve_providers

    chosen = ",".join(resolve_providers(providers))
    result = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_SCRIPT,
                             str(path), str(batch_size), str(threads), chosen],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise MenasError(f"measuring the memory of {path} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return round(int(result.stdout.strip()) / 1024, 1)


def precision_summaries(paths: dict[str, str | Path], *, batch_sizes: Iterable[int] = (1, 32), threads: int = 1,
                        runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, rounds: int = PRECISION_ROUNDS,
                        providers: str | Sequence[str] | None = None) -> dict[str, dict]:
    """What a model card shows for each file (one per precision): p50/p90 and images/s per batch size, peak
    memory, size. The files alternate over ``rounds`` rounds and each keeps, per batch size, its round with
    the lowest p50 (as :func:`best_of_rounds`), so a burst of load from elsewhere during one file's turn
    sets neither its number nor the int8-vs-fp32 comparison."""
    batch_sizes = list(batch_sizes)
    best: dict[tuple[str, int], LatencyStats] = {}
    for _ in range(rounds):
        for key, path in paths.items():
            for s in bench_onnx(path, batch_sizes=batch_sizes, threads=(threads,), runs=runs, warmup=warmup,
                                providers=providers):
                if (key, s.batch_size) not in best or s.p50_ms < best[key, s.batch_size].p50_ms:
                    best[key, s.batch_size] = s
    return {key: {"size_bytes": Path(path).stat().st_size, "threads": threads,
                  "batches": {str(b): {"p50_ms": best[key, b].p50_ms, "p90_ms": best[key, b].p90_ms,
                                       "images_per_s": best[key, b].images_per_s,
                                       "stdev_pct": best[key, b].stdev_pct} for b in batch_sizes},
                  "peak_memory_mb": peak_memory_mb(path, batch_size=max(batch_sizes), threads=threads,
                                                   providers=providers)}
            for key, path in paths.items()}


def check_budget_value(max_latency_ms: float | None) -> None:
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise MenasError(f"--max-latency-ms must be a positive number of milliseconds, got {max_latency_ms}")


def budget_verdict(stats: Iterable[LatencyStats], max_latency_ms: float) -> dict:
    """The budget check as a report entry: the worst p90 among ``stats`` against the budget."""
    check_budget_value(max_latency_ms)
    worst = max(stats, key=lambda s: s.p90_ms)
    over = worst.p90_ms - max_latency_ms
    return {"max_latency_ms": max_latency_ms, "p90_ms": worst.p90_ms, "batch_size": worst.batch_size,
            "threads": worst.threads, "over_ms": round(max(over, 0.0), 4), "passed": over <= 0}


def check_budget(stats: Iterable[LatencyStats], max_latency_ms: float) -> None:
    """Raise :class:`LatencyBudgetError` (one line: by how much) when any p90 is over the budget."""
    verdict = budget_verdict(list(stats), max_latency_ms)
    if not verdict["passed"]:
        raise LatencyBudgetError(
            f"p90 latency {verdict['p90_ms']:.3f} ms (batch {verdict['batch_size']}, {verdict['threads']} thread(s)) "
            f"is {verdict['over_ms']:.3f} ms ({verdict['over_ms'] / max_latency_ms:.0%}) over the "
            f"{max_latency_ms:g} ms budget")
