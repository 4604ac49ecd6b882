"""Per-block latency table: keys that name each part, {p90, count, mean, var} entries, and a predictor of the
latency a limit is checked against (export/latency.py)."""

import json

import numpy as np
import pytest

from menas_zoo.errors import MenasError
from menas_zoo.export import LatencyTable, build_latency_table, evaluate_predictor
from menas_zoo.export.defaults import LATENCY_OPSET
from menas_zoo.export.latency import latency_statistic
from menas_zoo.export.latency_table import OVERHEAD, network_parts, part_keys
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype, sample_genotype

A = resolve_genotype("stem8 / k3_h16_c8_s1_re / k3_h24_c16_s2_se_hs / head32")
B = resolve_genotype("stem8 / k3_h16_c8_s1_re / k5_h32_c16_s2_hs / head32 / fc64")  # shares stem and block 1


def test_keys_name_every_part_with_its_input_size():
    assert part_keys(A) == ["stem:i1_c8_k3_s1@28", "block:i8_k3_h16_c8_s1_re@28", "block:i8_k3_h24_c16_s2_se_hs@28",
                            "head:i16_c32_fc0_n10@14"]
    for g in (A, sample_genotype("small", 3), sample_genotype("small", 4)):
        parts = network_parts(build_model(g))
        assert [p.key for p in parts] == part_keys(g)
        assert parts[0].input_shape == (g.in_chans, g.resolution, g.resolution)


@pytest.fixture(scope="module")
def table():
    return build_latency_table([A, B], runs=8, warmup=1)


def test_table_measures_each_distinct_part_once(table):
    assert set(table.entries) == set(part_keys(A)) | set(part_keys(B)) | {OVERHEAD}
    for entry in table.entries.values():
        assert set(entry) == {"p90", "count", "mean", "var"}
        assert 1 <= entry["count"] <= 8 and entry["mean"] > 0 and entry["var"] >= 0 and entry["p90"] > 0
    assert table.meta["threads"] == 1 and table.meta["machine"]["cpu"]
    assert (table.meta["opset"], table.meta["statistic"]) == (LATENCY_OPSET, "p90")


def test_predictor_sums_parts_and_counts_the_call_overhead_once(table):
    latency, std = table.predict(A)
    overhead = table.entries[OVERHEAD]["p90"]
    expected = overhead + sum(max(table.entries[k]["p90"] - overhead, 0) for k in part_keys(A))
    assert latency == pytest.approx(expected) and std >= 0


def test_table_round_trips_and_refuses_unknown_parts(table, tmp_path):
    table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.entries == table.entries and loaded.predict(B) == table.predict(B)
    unknown = resolve_genotype("stem16 / k7_h48_c24_s1_hs / head64")
    with pytest.raises(MenasError, match="latency table lacks 3 part"):
        loaded.predict(unknown)
    old = {**table.to_dict(), "version": 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(MenasError, match="version 1 latency table; this menas-zoo reads version 2 .each part's p90.: "
                                         "measure it again"):
        LatencyTable.load(tmp_path / "old.json")
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(MenasError, match="not a menas-zoo latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_extending_a_table_measures_only_new_parts(table):
    before = dict(table.entries)
    extended = build_latency_table([A], table=LatencyTable(dict(before), dict(table.meta)), runs=8, warmup=1)
    assert extended.entries == before
    with pytest.raises(MenasError, match="same settings"):
        build_latency_table([A], table=LatencyTable(dict(before), dict(table.meta)), threads=2)


def test_predictor_error_is_reported_against_measured_networks(table):
    result = evaluate_predictor(table, [A, B], runs=8, warmup=1)
    assert [r["genotype"] for r in result["networks"]] == [A.to_compact(), B.to_compact()]
    for row in result["networks"]:
        assert row["measured_ms"] > 0
        assert row["error_pct"] == pytest.approx((row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"] * 100,
                                                 rel=0.05, abs=0.5)  # rows are rounded
    assert result["worst_abs_error_pct"] >= result["median_abs_error_pct"] >= 0


def test_one_definition_of_latency():
    """The search's measurement, the table's parts and its evaluation share one opset and one statistic."""
    import menas_zoo.export.latency as latency
    import menas_zoo.export.latency_table as latency_table
    from menas_zoo.export.defaults import DEFAULT_OPSET

    assert LATENCY_OPSET == DEFAULT_OPSET == latency_table.TABLE_OPSET
    assert latency_table.TABLE_EXPORTER == latency.LATENCY_EXPORTER
    times = np.arange(1, 101, dtype=float)  # 1..100 ms
    assert latency_statistic(times) == pytest.approx(np.percentile(times, 90))


def test_the_search_measurement_exports_at_the_latency_opset(monkeypatch):
    import menas_zoo.export.latency as latency
    from menas_zoo.export.onnx import export_onnx

    seen = []

    def spy(module, path, **kwargs):
        seen.append((kwargs["opset"], kwargs["exporter"], kwargs["dynamic_batch"]))
        return export_onnx(module, path, **kwargs)

    monkeypatch.setattr(latency, "export_onnx", spy)
    assert latency.measure_latency_ms(build_model(A), runs=4, warmup=1) > 0
    assert seen == [(LATENCY_OPSET, "torchscript", False)]
