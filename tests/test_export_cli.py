"""``menas-zoo export`` and ``menas-zoo bench``: files and report on success, one line and exit 2 on bad input,
exit 3 on a parity failure and exit 4 on a latency over budget."""

import json

import pytest
from cli_helpers import assert_one_line_error, run
from export_fixtures import TINY
from safetensors.torch import save_file
from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.errors import EXIT_OVER_BUDGET, EXIT_PARITY
from menas_zoo.export import pipeline

# the default exporter is tested in test_export_onnx
FAST = ["--exporter", "torchscript", "--runs", "10", "--parity-images", "64"]



def test_export_artifact_writes_model_int8_and_report(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    result, stdout, _ = run("export", tiny_export_artifact, "--out", out, "--int8", "--calibration-images", "64",
                            "--batch-sizes", "1,3", "--json", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads(stdout)
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "model.int8.onnx", "model.onnx"]
    assert json.loads((out / "export_report.json").read_text()) == report
    assert report["onnx"]["opset"] == 18 and report["onnx"]["exporter"] == "torchscript"
    assert (report["onnx"]["input_shape"][0] == "batch"
            and report["onnx"]["size_bytes"] == (out / "model.onnx").stat().st_size)
    assert report["parity"]["passed"] and report["parity"]["batch_size"] != report["onnx"]["export_batch"]
    assert [r["batch_size"] for r in report["latency"]["onnxruntime"]] == [1, 3]
    assert report["latency"]["eager"] and report["latency"]["machine"]["onnxruntime"]
    assert report["int8"]["int8_bytes"] == (out / "model.int8.onnx").stat().st_size
    assert report["recommended"] in ("model.onnx", "model.int8.onnx")


def test_export_genotype_with_weights_prints_tables(tiny_model, tmp_path):
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(weights))
    result, stdout, _ = run("export", TINY, "--weights", weights, "--out", tmp_path / "out", "--optimize", *FAST)
    assert result.exit_code == 0, result.output
    assert "parity: max |logit diff|" in stdout and "ORT p50 ms" in stdout and "ORT-optimized" in stdout


def test_over_budget_exits_nonzero_saying_by_how_much(tiny_export_artifact, tmp_path):
    result, _, stderr = run("export", tiny_export_artifact, "--out", tmp_path / "out", "--max-latency-ms", "0.00001",
                            *FAST)
    assert_one_line_error(result, stderr, r"p90 latency \d+\.\d+ ms \(batch 1, 1 thread\(s\)\) is .* "
                                          r"over the 1e-05 ms budget",
                          code=EXIT_OVER_BUDGET)
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())  # the export itself is sound
    assert report["budget"]["passed"] is False and report["budget"]["over_ms"] > 0


def test_parity_failure_writes_nothing(tiny_export_artifact, tmp_path, monkeypatch):
    real_export = pipeline.export_onnx

    def export_then_drift(model, path, **kwargs):  # a conversion that silently changes the network
        drifted = type(model)(model.genotype).eval()
        return real_export(drifted, path, **kwargs)

    monkeypatch.setattr(pipeline, "export_onnx", export_then_drift)
    out = tmp_path / "out"
    result, _, stderr = run("export", tiny_export_artifact, "--out", out, *FAST)
    assert_one_line_error(result, stderr, r"parity failed for .*max \|logit diff\|", code=EXIT_PARITY)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, pattern", [
    ([TINY], r"is a genotype, not a trained model: add --weights"),
    ([TINY, "--random-init", "--opset", "9"], r"opset 9 is not supported by the dynamo exporter; use 18 to 21"),
    ([TINY, "--random-init", "--max-latency-ms", "0"], r"--max-latency-ms must be a positive number"),
    ([TINY, "--random-init", "--max-latency-ms", "-3"], r"--max-latency-ms must be a positive number"),
    ([TINY, "--random-init", "--batch-sizes", "1,x"], r"--batch-sizes must be comma-separated positive integers"),
])
def test_bad_export_input_is_one_line(args, pattern, tmp_path):
    result, _, stderr = run("export", *args, "--out", tmp_path / "out")
    assert_one_line_error(result, stderr, pattern)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_wrong_ref_is_the_same_exact_line_in_every_command(tmp_path, monkeypatch):
    """An unknown name (a typo), a malformed hf-hub: ref, a missing folder and a damaged artifact folder: each
    is one line, the same in every command that takes a model ref, with exit code 2, and nothing written."""
    from menas_zoo import list_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registered = ", ".join(list_models(pretrained=True)) or "none"
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    (damaged / "model.safetensors").write_bytes(b"not weights")
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the ref fails first
    wrong = {
        "no-such-model-xyz": (f"unknown model 'no-such-model-xyz': zoo models: {registered}; reference genotypes: "
                              "mobilenetv3-large, mobilenetv3-small (or pass hf-hub:ORG/NAME, an artifact folder, "
                              "or where a command takes one, a genotype)"),
        "mt-tst": "unknown model 'mt-tst': did you mean mt-test, ",  # the nearest first (test_registry: the rest)
        "hf-hub:not a/repo": ("malformed Hub ref 'hf-hub:not a/repo': expected hf-hub:ORG/NAME or "
                              "hf-hub:ORG/NAME@REVISION"),
        str(tmp_path / "absent" / "model"): (f"no such folder: {tmp_path / 'absent' / 'model'} (for a Hub repo write "
                                             "hf-hub:ORG/NAME)"),
        str(damaged): f"{damaged / 'config.json'} is not valid JSON: ",
    }
    for ref, line in wrong.items():
        for command in (["load", ref], ["info", ref], ["export", ref, "--out", tmp_path / "out"], ["bench", ref],
                        ["predict", ref, image], ["demo", ref, "--out", tmp_path / "demo.png"]):
            result, stdout, stderr = run(*command)
            assert (result.exit_code, stdout) == (2, ""), (command, result.output)
            assert stderr.startswith(f"error: {line}") and stderr.count("\n") == 1, (command, stderr)
            assert stderr == run("load", ref)[2], command  # to the letter
    assert not (tmp_path / "out").exists() and not (tmp_path / "demo.png").exists()


def test_unwritable_out_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result, _, stderr = run("export", TINY, "--random-init", "--out", blocker / "out")
    assert_one_line_error(result, stderr, r"cannot write to .*file/out")
    result, _, stderr = run("export", TINY, "--random-init", "--out", blocker)
    assert_one_line_error(result, stderr, r"exists and is not a folder")


def test_bench_onnx_file_and_budget(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    assert run("export", tiny_export_artifact, "--out", out, *FAST)[0].exit_code == 0
    result, stdout, _ = run("bench", out / "model.onnx", "--batch-sizes", "1,2", "--runs", "10", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(stdout)
    assert [r["batch_size"] for r in data["onnxruntime"]] == [1, 2] and data["machine"]["cpu"]
    result, _, stderr = run("bench", out / "model.onnx", "--runs", "10", "--max-latency-ms", "1e-6")
    assert_one_line_error(result, stderr, r"over the 1e-06 ms budget", code=EXIT_OVER_BUDGET)


def test_bench_model_ref_compares_with_eager(tmp_path):
    result, stdout, _ = run("bench", TINY, "--random-init", "--exporter", "torchscript", "--batch-sizes", "1",
                            "--runs", "10", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(stdout)["onnxruntime"][0]
    assert row["eager_p50_ms"] > 0 and row["speedup_vs_eager_p50"] > 0


def test_bench_an_onnx_file_that_does_not_load(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    result, _, stderr = run("bench", bad)
    assert_one_line_error(result, stderr, r"broken.onnx does not load in ONNX Runtime")
    result, _, stderr = run("bench", tmp_path / "missing.onnx")
    assert_one_line_error(result, stderr, r"ONNX file not found")


def test_bench_per_block_writes_table_and_reports_predictor_error(tmp_path):
    table = tmp_path / "table.json"
    result, stdout, _ = run("bench", TINY, "--per-block", "--table", table, "--genotypes", "0",
                            "--runs", "5", "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(stdout)
    assert ([r["genotype"] for r in data["networks"]] == [TINY]
            and data["worst_abs_error_pct"] >= data["median_abs_error_pct"])
    saved = json.loads(table.read_text())
    assert saved["kind"] == "menas-zoo latency table" and len(saved["entries"]) == data["entries"]
    assert all(set(e) == {"p90", "count", "mean", "var"} for e in saved["entries"].values())
    assert (saved["version"], saved["statistic"], saved["opset"]) == (2, "p90", 18)


def test_corrupt_weights_file_is_one_line(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["export", "stem8 / k3_h16_c8_s1_re / head32", "--weights", str(bad),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "w.safetensors is not a readable safetensors file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
