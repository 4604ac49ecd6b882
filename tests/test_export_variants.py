"""Export for other runtimes and precisions: fp16 with its own parity, .ort with ORT's mobile check, int8
with a chosen calibration and per-layer error, latency/memory per precision, and parity that reads
normalization from the file's metadata."""

import json

import onnx
import pytest
from export_fixtures import TINY
from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.edge import metadata_props, open_session
from menas_zoo.export import real_images
from menas_zoo.export.onnx import embed_metadata
from menas_zoo.export.parity import ParityError, check_parity
from menas_zoo.hub.card import check_card, write_card

FAST = ["--exporter", "torchscript", "--runs", "5", "--parity-images", "64"]


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout, result.stderr


def test_fp16_ort_int8_files_with_their_checks_and_per_precision_numbers(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    result, stdout, _ = run("export", tiny_export_artifact, "--out", out, "--fp16", "--ort-format", "--int8",
                            "--calibration-method", "entropy", "--calibration-images", "64", "--json", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads(stdout)
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "model.fp16.onnx", "model.int8.onnx",
                                                     "model.onnx", "model.ort"]
    fp16 = report["fp16"]
    assert fp16["parity"]["passed"] and 0 < fp16["parity"]["max_abs_diff"] <= fp16["parity"]["atol"] == 5e-2
    half = onnx.load(str(out / "model.fp16.onnx"))
    weights = [t for t in half.graph.initializer if len(t.dims) >= 2]  # conv and linear weights
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in, float32 out
    assert {p.key for p in half.metadata_props} >= {"labels", "mean", "std"}
    ort = report["ort_format"]
    assert ort["size_bytes"] == (out / "model.ort").stat().st_size
    assert set(ort["mobile_eps"]) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}
    assert all(v in ("YES", "MAYBE", "NO") for v in ort["mobile_eps"].values())
    assert open_session(out / "model.ort").get_modelmeta().custom_metadata_map["labels"]  # ORT Mobile loads it
    int8 = report["int8"]
    assert int8["calibration_method"] == "entropy" and int8["layer_errors"]
    sqnr = [e["sqnr_db"] for e in int8["layer_errors"]]
    assert sqnr == sorted(sqnr) and all(e["tensor"] for e in int8["layer_errors"])
    assert set(report["precisions"]) == {"fp32", "fp16", "int8"}
    for p in report["precisions"].values():
        assert p["size_bytes"] == (out / p["path"]).stat().st_size
        assert set(p["batches"]) == {"1", "32"}
        b1, b32 = p["batches"]["1"], p["batches"]["32"]
        assert (0 < b1["p50_ms"] <= b1["p90_ms"]
                and b32["images_per_s"] == pytest.approx(32_000 / b32["p50_ms"], rel=0.01))
        assert p["peak_memory_mb"] > 0


def test_a_plain_export_removes_variant_files_of_an_earlier_one(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    assert run("export", tiny_export_artifact, "--out", out, "--fp16", *FAST)[0].exit_code == 0
    assert (out / "model.fp16.onnx").exists()
    assert run("export", tiny_export_artifact, "--out", out, *FAST)[0].exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "model.onnx"]


def test_parity_reads_normalization_from_the_file(tiny_model, tiny_onnx, fashion_test, tmp_path):
    ds = fashion_test
    normalized = real_images(ds, 32)
    raw = real_images(ds, 32, mean=[0.0], std=[1.0])
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    for path, mean in ((good, ds.mean), (bad, [m + 0.1 for m in ds.mean])):
        path.write_bytes(tiny_onnx[1].read_bytes())
        embed_metadata(path, metadata_props(labels=ds.classes, mean=mean, std=ds.std, channels=1, resolution=28))
    result = check_parity(tiny_model, good, normalized, raw_images=raw, batch_size=8)
    assert result.passed and result.normalization == "onnx metadata"
    with pytest.raises(ParityError, match="parity failed"):
        check_parity(tiny_model, bad, normalized, raw_images=raw, batch_size=8)


@pytest.mark.parametrize("args, pattern", [
    (["--calibration-method", "guess"], r"unknown calibration method 'guess'; known: minmax, entropy"),
    (["--providers", "warp-drive"], r"unknown execution provider 'warp-drive'"),
    (["--fp16", "--optimize"], r"leave out --optimize"),
])
def test_bad_variant_options_are_one_line(args, pattern, tmp_path):
    import re

    result, _, stderr = run("export", TINY, "--random-init", "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and stderr.count("\n") == 1 and re.search(pattern, stderr), stderr
    assert not (tmp_path / "out").exists()


def test_card_shows_the_exports_numbers_per_precision(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    assert run("export", tiny_export_artifact, "--out", out, "--fp16", *FAST)[0].exit_code == 0
    report = json.loads((out / "export_report.json").read_text())
    card = write_card(tiny_export_artifact, export_report=out / "export_report.json")
    config = json.loads((tiny_export_artifact / "config.json").read_text())
    assert config["metrics"]["deployment"]["precisions"] == report["precisions"]
    text = card.read_text()
    fp32 = report["precisions"]["fp32"]["batches"]["32"]
    assert "| fp32 | " in text and f"{fp32['p50_ms']:.3f} / {fp32['p90_ms']:.3f}" in text and "| fp16 | " in text
    check_card(text, config)
    from menas_zoo.cli.zoo import _fmt_precisions  # what `menas-zoo list` shows for a model registered with it

    assert _fmt_precisions(config["metrics"], "1", "p50_ms") == (
        f"fp32 {report['precisions']['fp32']['batches']['1']['p50_ms']:.3f} / "
        f"fp16 {report['precisions']['fp16']['batches']['1']['p50_ms']:.3f}")
    assert _fmt_precisions({}, "32", "images_per_s") == "-"
    config["metrics"]["deployment"]["precisions"]["fp32"]["batches"]["1"]["p50_ms"] += 1  # the card no longer agrees
    with pytest.raises(Exception, match="performance row of fp32"):
        check_card(text, config)
