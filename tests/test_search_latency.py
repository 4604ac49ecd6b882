"""A search's latency limit: the library measures candidates itself, the CLI asks the library what a resume may
change, and a profile file is a profile wherever a profile name is."""

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.errors import MenasError
from menas_zoo.search import SearchConfig, fixed_on_resume, run_search

pytestmark = pytest.mark.usefixtures("one_thread")


def config(profile, **changes):
    settings = dict(strategy="evolution", profile=profile, population=2, generations=0, epochs=1, val_size=256,
                    train_subset=256, device="cpu", seed=5)
    return SearchConfig(**{**settings, **changes})


def test_a_latency_limit_without_a_function_is_measured_by_the_exporter(tmp_path, tiny_profile, tiny_splits,
                                                                        monkeypatch):
    """run_search called as a library with max_latency_ms and no latency_fn measures what the CLI measures."""
    import menas_zoo.export.latency as latency

    measured = []

    def fake(model, **_):
        measured.append(model.genotype)
        return 0.25

    monkeypatch.setattr(latency, "measure_latency_ms", fake)
    started = []
    result = run_search(config(tiny_profile, max_latency_ms=1.0), tmp_path / "run", splits=tiny_splits,
                        write_report=False, on_start=started.append)
    assert [t.latency_ms for t in result.state.trials] == [0.25, 0.25]
    assert {t.genotype for t in result.state.trials} <= set(measured)  # every individual was measured
    assert started == [result.state]


def test_the_latency_measurement_is_a_real_onnx_runtime_timing():
    from menas_zoo.export.latency import latency_fn, measure_latency_ms
    from menas_zoo.nets import build_model
    from menas_zoo.space import resolve_genotype

    model = build_model(resolve_genotype("stem8 / k3_h16_c8_s2_re / head16"))
    ms = measure_latency_ms(model, runs=5, warmup=1)
    assert 0 < ms < 1000 and math.isfinite(ms)
    assert 0 < latency_fn(runs=5)(model) < 1000


def test_paired_latency_is_the_within_round_ratio_in_the_reference_s_ms(monkeypatch):
    """PairedLatency times candidate and reference in alternating rounds and scales the median ratio."""
    import pickle

    import menas_zoo.export.latency as latency
    from menas_zoo.export.bench import LatencyStats
    from menas_zoo.nets import build_model
    from menas_zoo.space import resolve_genotype

    small = build_model(resolve_genotype("stem8 / k3_h16_c8_s2_re / head16"))
    big = build_model(resolve_genotype("stem16 / k5_h96_c32_s1_se_hs,k5_h96_c32_s1_se_hs / head256 / fc128"))
    real = latency.PairedLatency(small, 0.5, rounds=2, runs=5)
    assert 0 < real(big) < 1000 and math.isfinite(real(big))  # real files, timed in ONNX Runtime
    assert pickle.loads(pickle.dumps(real)).reference_ms == 0.5  # a Ray backend ships it to its workers
    assert 0 < latency.reference_latency_ms(small, rounds=1, runs=5) < 1000

    # The machine slows down 3x in round 2 and a burst hits the candidate in round 3: the median of
    # the within-round ratios (2.0, 2.0, 6.0) is 2, so the candidate reads as twice the reference's ms.
    rounds = {"model": [1.0, 3.0, 3.0], "reference": [0.5, 1.5, 0.5]}
    timed = []

    def fake_rounds(paths, **kwargs):
        timed.append(sorted(p.name for p in paths.values()))
        return {key: [LatencyStats("onnxruntime", 1, 1, 5, 1, ms, ms, ms, ms, 1.0) for ms in rounds[key]]
                for key in paths}

    monkeypatch.setattr(latency, "interleaved_rounds", fake_rounds)
    exports = []
    export = latency.export_for_timing
    monkeypatch.setattr(latency, "export_for_timing", lambda net, *args: exports.append(net) or export(net, *args))
    paired = latency.PairedLatency(small, 0.25)
    assert paired(big) == 0.5 and paired(big) == 0.5
    assert timed == [["model.onnx", "reference.onnx"]] * 2
    assert exports == [small, big, big]  # the reference is exported once, then its file is reused


def test_a_missing_latency_table_fails_before_the_run_folder_exists(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["search", "--out", str(out), "--max-latency-ms", "1",
                                      "--latency-table", str(tmp_path / "absent.json")])
    assert result.exit_code == 2 and "cannot read latency table" in result.stderr and not out.exists()
    result = CliRunner().invoke(app, ["search", "--out", str(out), "--latency-table", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "give that limit too" in result.stderr and not out.exists()


def test_what_a_resume_may_change_is_the_library_s_answer(tmp_path, tiny_profile, tiny_splits):
    assert fixed_on_resume({"budget_minutes": 3, "device": "cpu", "population": None}) == []
    assert fixed_on_resume({"population": 4, "early_bird": False, "device": None}) == ["population", "early_bird"]
    out = tmp_path / "run"
    run_search(config(tiny_profile), out, splits=tiny_splits, write_report=False)
    with pytest.raises(MenasError, match="population cannot change on --resume"):
        run_search(None, out, resume=True, overrides={"population": 4})
    result = CliRunner().invoke(app, ["search", "--resume", str(out), "--population", "4", "--no-early-stop"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert ("drop --population, --early-stop (only --budget-minutes, --device, --threads and --backend may change)"
            in result.stderr)


def test_a_profile_file_is_a_profile_everywhere(tmp_path, tiny_profile):
    from menas_zoo.space import get_profile

    path = tmp_path / "mine.json"
    path.write_text(json.dumps(dataclasses.asdict(tiny_profile)))
    assert get_profile(str(path)) == tiny_profile
    assert SearchConfig(profile=str(path)).profile == tiny_profile
    (tmp_path / "bad.json").write_text('["not", "fields"]')
    with pytest.raises(MenasError, match="is not a valid search profile"):
        get_profile(str(tmp_path / "bad.json"))
    with pytest.raises(MenasError, match="cannot read profile"):
        get_profile(str(tmp_path / "absent.json"))
