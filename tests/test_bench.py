"""Latency: percentiles from timed runs in ORT and eager PyTorch, a machine fingerprint, a p90 budget."""

import dataclasses
import time
from pathlib import Path

import pytest

from menas_zoo.errors import MenasError
from menas_zoo.export import LatencyBudgetError, LatencyStats, benchmark, check_budget, export_onnx, machine_fingerprint
from menas_zoo.export import bench
from menas_zoo.export.bench import (best_of_rounds, budget_verdict, interleaved_rounds, mcnemar, paired_ratio,
                                    paired_verdict, sign_test, time_calls)


def test_benchmark_times_ort_and_eager_per_configuration(tiny_model, tiny_onnx):
    report = benchmark(tiny_onnx[1], tiny_model, batch_sizes=(1, 4), threads=(1,), runs=12, warmup=2)
    assert [(s.runtime, s.batch_size, s.runs) for s in report.onnxruntime] == [("onnxruntime", 1, 12),
                                                                               ("onnxruntime", 4, 12)]
    assert [(s.runtime, s.batch_size) for s in report.eager] == [("pytorch-eager", 1), ("pytorch-eager", 4)]
    for s in report.onnxruntime + report.eager:
        assert 0 < s.p50_ms <= s.p90_ms <= s.p99_ms and s.mean_ms > 0 and s.stdev_pct >= 0
    rows = report.as_dict()["onnxruntime"]
    assert rows[0]["speedup_vs_eager_p50"] == pytest.approx(report.eager[0].p50_ms / report.onnxruntime[0].p50_ms,
                                                            rel=0.02)


def test_time_calls_counts_runs_after_warmup_in_milliseconds():
    calls = []
    times = time_calls(lambda: (calls.append(1), time.sleep(0.002)), runs=7, warmup=3)
    assert len(times) == 7 and len(calls) == 10
    assert (times >= 2.0).all() and (times < 2000).all(), times  # a 2 ms sleep reads as 2+ ms, not s or us


def test_fingerprint_names_machine_and_versions():
    fp = machine_fingerprint()
    for key in ("cpu", "logical_cores", "usable_cores", "onnxruntime", "torch", "onnx", "python"):
        assert fp[key], key


def _stats(p90: float, batch: int = 1) -> LatencyStats:
    return LatencyStats("onnxruntime", batch, 1, 100, 10, p90 / 2, p90, p90 * 2, p90 / 2, 5.0)


def test_budget_says_by_how_much_p90_is_over():
    check_budget([_stats(0.8)], 1.0)  # within budget: no error
    with pytest.raises(LatencyBudgetError, match=r"p90 latency 1\.500 ms \(batch 32, 1 thread\(s\)\) is 0\.500 ms "
                                                 r"\(50%\) over the 1 ms budget") as err:
        check_budget([_stats(0.8), _stats(1.5, batch=32)], 1.0)
    assert "\n" not in str(err.value)
    assert budget_verdict([_stats(1.5)], 1.0) == {"max_latency_ms": 1.0, "p90_ms": 1.5, "batch_size": 1,
                                                  "threads": 1, "over_ms": 0.5, "passed": False}


@pytest.mark.parametrize("budget", [0, -1.0])
def test_zero_or_negative_budget_is_refused(budget):
    with pytest.raises(MenasError, match="must be a positive number of milliseconds"):
        check_budget([_stats(0.8)], budget)


def test_fixed_batch_model_cannot_be_timed_at_another_batch(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "fixed.onnx", exporter="torchscript", dynamic_batch=False).path
    with pytest.raises(MenasError, match="fixed batch size of 2"):
        benchmark(path, batch_sizes=(1,), runs=2, warmup=0)


def _timed(p50, p90, stdev, batch=1):
    return LatencyStats(runtime="onnxruntime", batch_size=batch, threads=1, runs=100, warmup=10, p50_ms=p50, p90_ms=p90,
                        p99_ms=p90, mean_ms=p50, stdev_pct=stdev)


def test_bench_warns_when_timing_is_noisy_or_the_machine_loaded():
    from menas_zoo.export.bench import BenchReport, noise_warnings

    quiet = {"load_average": [0.1, 0.1, 0.1], "usable_cores": 2}
    assert noise_warnings(BenchReport(quiet, [_timed(1.0, 1.1, 5)])) == []
    (spread,) = noise_warnings(BenchReport(quiet, [_timed(1.0, 1.1, 40)]))
    assert "noisy (stdev 40% of the mean" in spread
    (tail,) = noise_warnings(BenchReport(quiet, [_timed(1.0, 2.0, 5)]))
    assert "p90 2.00x p50" in tail
    (loaded,) = noise_warnings(BenchReport({"load_average": [3.5, 2, 1], "usable_cores": 2}, [_timed(1.0, 1.1, 5)]))
    assert "machine was loaded" in loaded


def test_throughput_is_images_per_second_at_p50(tiny_onnx):
    assert _timed(2.0, 2.1, 1, batch=32).images_per_s == 16000.0
    (stats,) = benchmark(tiny_onnx[1], batch_sizes=(4,), runs=5, warmup=1).onnxruntime
    assert stats.as_dict()["images_per_s"] == pytest.approx(4000 / stats.p50_ms, rel=0.01)


def test_unknown_or_unavailable_provider_is_one_clear_error(tiny_onnx):
    with pytest.raises(MenasError, match="unknown execution provider 'nope'"):
        benchmark(tiny_onnx[1], runs=2, warmup=0, providers="nope")
    report = benchmark(tiny_onnx[1], runs=2, warmup=0, providers="cpu")
    assert report.fingerprint["providers"] == ["CPUExecutionProvider"]


def _p50(p50: float) -> LatencyStats:
    return LatencyStats("onnxruntime", 1, 1, 100, 10, p50, p50, p50, p50, 5.0)


def test_rounds_alternate_the_files_and_the_best_round_is_kept(monkeypatch):
    order, timings = [], {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}

    def fake_bench(path, **kwargs):
        order.append(path)
        return [_p50(next(timings[path]))]

    monkeypatch.setattr(bench, "bench_onnx", fake_bench)
    measured = interleaved_rounds({"a": "a", "b": "b"}, rounds=3)
    assert order == ["a", "b"] * 3
    assert [s.p50_ms for s in measured["a"]] == [3.0, 1.0, 2.0] and [s.p50_ms for s in measured["b"]] == [5.0, 6.0, 4.0]
    timings = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}
    best = best_of_rounds({"a": "a", "b": "b"}, rounds=3)
    assert (best["a"].p50_ms, best["b"].p50_ms) == (1.0, 4.0)


def test_card_precisions_alternate_the_files_and_keep_each_batch_sizes_best_round(monkeypatch, tmp_path):
    order = []
    timings = {("fp32", 1): iter([0.9, 0.2, 0.3]), ("fp32", 32): iter([5.0, 6.0, 4.0]),
               ("int8", 1): iter([0.4, 0.5, 0.35]), ("int8", 32): iter([3.0, 9.0, 9.0])}

    def fake_bench(path, *, batch_sizes, **kwargs):
        order.append(Path(path).stem)
        return [dataclasses.replace(_p50(next(timings[Path(path).stem, b])), batch_size=b) for b in batch_sizes]

    monkeypatch.setattr(bench, "bench_onnx", fake_bench)
    monkeypatch.setattr(bench, "peak_memory_mb", lambda *args, **kwargs: 1.0)
    paths = {}
    for name in ("fp32", "int8"):
        paths[name] = tmp_path / f"{name}.onnx"
        paths[name].write_bytes(b"x" * (4 if name == "fp32" else 1))
    summaries = bench.precision_summaries(paths, batch_sizes=(1, 32), rounds=3)
    assert order == ["fp32", "int8"] * 3  # alternating, so load in one file's turn does not decide fp32 vs int8
    assert {k: [v["batches"][b]["p50_ms"] for b in ("1", "32")] for k, v in summaries.items()} == {
        "fp32": [0.2, 4.0], "int8": [0.35, 3.0]}  # each batch size keeps its own fastest round
    assert summaries["fp32"]["size_bytes"] == 4 and summaries["int8"]["peak_memory_mb"] == 1.0


def test_paired_ratio_compares_within_rounds():
    # The machine is twice as slow in round 2 and a burst hits the model in round 3: the median of the
    # within-round ratios (1.11, 0.91, 2.5) is round 1's, and the model was the faster in round 2 alone.
    model = [_p50(1.0), _p50(2.0), _p50(3.0)]
    peer = [_p50(0.9), _p50(2.2), _p50(1.2)]
    ratio, wins = paired_ratio(model, peer)
    assert ratio == pytest.approx(1.0 / 0.9) and wins == 1
    ratio, wins = paired_ratio(peer, model)
    assert ratio == pytest.approx(0.9) and wins == 2
    with pytest.raises(ValueError, match="paired rounds"):
        paired_ratio(model, peer[:2])


def test_sign_test_tails():
    assert sign_test(5, 5) == pytest.approx(1 / 32)
    assert sign_test(4, 5) == pytest.approx(6 / 32)
    assert sign_test(0, 5) == 1.0
    assert sign_test(12, 15) == pytest.approx(576 / 2 ** 15)


def test_mcnemar_counts_only_the_images_the_two_disagree_on():
    a = [True] * 6 + [False] * 2 + [True] * 90  # 6 right only for a, 2 only for b, 90 for both
    b = [False] * 6 + [True] * 2 + [True] * 90
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (6, 2)
    assert p == pytest.approx(2 * 37 / 256)  # two-sided: P(X >= 6) + P(X <= 2) for X ~ Bin(8, 1/2)
    assert mcnemar(b, a) == (2, 6, p) and mcnemar(a, a) == (0, 0, 1.0)
    with pytest.raises(ValueError):
        mcnemar(a, b[:-1])


def test_paired_verdict_calls_a_split_a_tie():
    # 0.95x over five rounds, but only 3 of them won: a coin does that half the time, so no verdict.
    model = [_p50(x) for x in (0.90, 0.95, 1.10, 0.91, 1.02)]
    peer = [_p50(1.0)] * 5
    v = paired_verdict(model, peer)
    assert (v["verdict"], v["faster_rounds"], v["rounds"]) == ("tie", 3, 5)
    assert v["p50_ratio"] == pytest.approx(0.95) and v["sign_p"] == pytest.approx(0.5)
    # Every round won, or every round lost: p = 1/32 < 0.05 either way.
    assert paired_verdict([_p50(0.99)] * 5, peer)["verdict"] == "faster"
    assert paired_verdict([_p50(1.01)] * 5, peer)["verdict"] == "slower"
    # Three rounds can never reach 0.05: all won is still a tie.
    v = paired_verdict([_p50(0.5)] * 3, [_p50(1.0)] * 3)
    assert (v["verdict"], v["sign_p"]) == ("tie", 0.125)
