"""``menas-zoo predict`` and the torch-free runtime (menas_zoo/edge.py): an exported .onnx file alone
classifies PNG/JPEG images, agrees with PyTorch, and bad input is one line and exit 2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import assert_one_line_error, run
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FAST = ["--exporter", "torchscript", "--runs", "5", "--parity-images", "64"]


@pytest.fixture(scope="module")
def artifact(tiny_model, fashion_test, tmp_path_factory):
    from menas_zoo.artifact import save_artifact

    spec = {"in_chans": 1, "resolution": 28, "mean": list(fashion_test.mean), "std": list(fashion_test.std)}
    return save_artifact(tmp_path_factory.mktemp("artifact") / "tiny", tiny_model, input_spec=spec,
                         labels=fashion_test.classes)


@pytest.fixture(scope="module")
def exported(artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result, _, _ = run("export", artifact, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out / "model.onnx"


@pytest.fixture(scope="module")
def pngs(fashion_test, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(40):
        Image.fromarray(fashion_test.images[i, 0].numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_export_writes_what_inference_needs_into_the_onnx_file(exported, artifact, fashion_test):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    config = json.loads((artifact / "config.json").read_text())
    assert json.loads(meta["labels"]) == fashion_test.classes
    assert json.loads(meta["mean"]) == pytest.approx(config["input_spec"]["mean"])
    assert json.loads(meta["std"]) == pytest.approx(config["input_spec"]["std"])
    assert (meta["input_layout"], meta["input_channels"], meta["input_resolution"]) == ("NCHW", "1", "28")
    assert json.loads(meta["genotype"]) == config["genotype"]
    assert meta["source_ref"] == artifact.name and len(meta["source_sha256"]) == 64  # no directory path
    assert meta["menas_zoo_version"]
    report = json.loads((exported.parent / "export_report.json").read_text())
    assert report["parity"]["normalization"] == "onnx metadata" and report["parity"]["passed"]


def test_predict_agrees_with_pytorch_on_real_images(exported, pngs, tiny_model, fashion_test):
    result, stdout, _ = run("predict", exported, pngs, "--top-k", "2", "--batch-size", "7", "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(stdout)["predictions"]
    assert [Path(p["image"]).name for p in predictions] == [f"{i:03d}.png" for i in range(40)]
    x = fashion_test.images[:40].float().div(255)
    mean, std = (torch.tensor(fashion_test.mean).view(1, -1, 1, 1),
                 torch.tensor(fashion_test.std).view(1, -1, 1, 1))
    with torch.inference_mode():
        probs = torch.softmax(tiny_model((x - mean) / std), 1)
    labels = fashion_test.classes
    assert [p["top"][0]["label"] for p in predictions] == [labels[i] for i in probs.argmax(1).tolist()]
    for p, row in zip(predictions, probs):
        assert len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"]
        assert p["top"][0]["probability"] == pytest.approx(float(row.max()), abs=1e-4)


def test_predict_with_a_zoo_artifact_runs_pytorch_with_the_same_reading(exported, artifact, pngs):
    onnx_out = json.loads(run("predict", exported, pngs, "--json")[1])["predictions"]
    result, stdout, _ = run("predict", artifact, pngs, "--json")
    assert result.exit_code == 0, result.output
    torch_out = json.loads(stdout)["predictions"]
    assert [p["top"][0]["label"] for p in torch_out] == [p["top"][0]["label"] for p in onnx_out]


def test_predict_table_converts_and_resizes_as_the_model_needs(exported, fashion_test, tmp_path):
    rgb = tmp_path / "big.jpg"
    Image.fromarray(np.stack([fashion_test.images[0, 0].numpy()] * 3, -1)).resize((90, 60)).save(rgb)
    result, stdout, _ = run("predict", exported, rgb)
    assert result.exit_code == 0, result.output
    assert "big.jpg" in stdout and "#3" in stdout and "%" in stdout
    result, _, stderr = run("predict", exported, rgb, "--no-resize")
    assert_one_line_error(result, stderr, r"big.jpg is 90x60 px but the model reads 28x28")


def test_16_bit_png_reads_as_its_8_bit_original(exported, pngs, tmp_path):
    deep = tmp_path / "deep.png"
    original = np.asarray(Image.open(pngs / "003.png"))
    Image.fromarray(original.astype(np.uint16) * 257).save(deep)  # 0..255 -> 0..65535
    assert Image.open(deep).mode.startswith("I")
    both = json.loads(run("predict", exported, pngs / "003.png", deep, "--json")[1])["predictions"]
    assert both[0]["top"] == both[1]["top"]


def test_onnx_without_our_metadata_needs_mean_std_labels(exported, pngs, tmp_path, fashion_test):
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(exported))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    result, _, stderr = run("predict", bare, pngs)
    assert_one_line_error(result, stderr, r"no menas-zoo metadata for labels, mean, std: pass --labels \.\.\. --mean")
    labels = ",".join(fashion_test.classes)
    mean, std = str(fashion_test.mean[0]), str(fashion_test.std[0])
    result, stdout, _ = run("predict", bare, pngs, "--labels", labels, "--mean", mean, "--std", std, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(stdout)["predictions"] == json.loads(run("predict", exported, pngs, "--json")[1])["predictions"]
    result, _, stderr = run("predict", bare, pngs, "--labels", labels, "--mean", "0.1,0.2,0.3", "--std", std)
    assert_one_line_error(result, stderr, r"mean has 3 values but .* reads 1-channel images")
    result, _, stderr = run("predict", bare, pngs, "--labels", "a,b", "--mean", mean, "--std", std)
    assert_one_line_error(result, stderr, r"2 labels given but .* has 10 outputs")


@pytest.mark.parametrize("case, pattern", [
    ("not_an_image", r"not-an-image.png is not a readable PNG or JPEG image"),
    ("empty_folder", r"empty holds no PNG or JPEG images"),
    ("missing", r"no such image file or folder"),
    ("truncated_onnx", r"truncated.onnx does not load in ONNX Runtime"),
    ("unknown_provider", r"unknown execution provider 'warp-drive'; available here: .*CPUExecutionProvider"),
])
def test_bad_input_is_one_line(case, pattern, exported, pngs, tmp_path):
    model, images, extra = exported, [pngs / "000.png"], []
    if case == "not_an_image":
        (tmp_path / "not-an-image.png").write_text("hello")
        images = [tmp_path / "not-an-image.png"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        images = [tmp_path / "empty"]
    elif case == "missing":
        images = [tmp_path / "nope.png"]
    elif case == "truncated_onnx":
        model = tmp_path / "truncated.onnx"
        model.write_bytes(exported.read_bytes()[:2000])
    elif case == "unknown_provider":
        extra = ["--providers", "warp-drive"]
    result, stdout, stderr = run("predict", model, *images, *extra)
    assert_one_line_error(result, stderr, pattern)
    assert stdout == ""


def _blocked_torch_env(tmp_path) -> dict:
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}


def test_predict_on_an_onnx_file_never_imports_torch(exported, pngs, tmp_path):
    env = _blocked_torch_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "menas_zoo", "predict", str(exported), str(pngs), "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["predictions"]) == 40
    # The blocker is real: the same interpreter fails on a command that needs torch (info builds the network).
    proc = subprocess.run([sys.executable, "-m", "menas_zoo", "info", "mobilenetv3-small"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_edge_module_runs_vendored_alone(exported, pngs, tmp_path):
    device = tmp_path / "device"
    device.mkdir()
    shutil.copy(REPO / "menas_zoo" / "edge.py", device / "edge.py")
    env = _blocked_torch_env(tmp_path)
    env["PYTHONPATH"] = env["PYTHONPATH"].split(os.pathsep)[0]  # the blocker only: no menas_zoo source tree
    proc = subprocess.run([sys.executable, "edge.py", str(exported), str(pngs / "000.png"),
                           "--json"], capture_output=True, text=True, env=env, cwd=device, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (prediction,) = json.loads(proc.stdout)
    assert prediction["image"].endswith("000.png") and len(prediction["top"]) == 3


def test_zoo_model_onnx_top1_agrees_with_pytorch_on_512_real_test_images(fashion_test, tmp_path):
    """The target of the feature: the zoo's model, exported, classifies 512 real PNGs as PyTorch does."""
    out, folder = tmp_path / "export", tmp_path / "png"
    folder.mkdir()
    for i in range(512):
        Image.fromarray(fashion_test.images[i, 0].numpy()).save(folder / f"{i:04d}.png")
    result, _, _ = run("export", "mt-test", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    onnx_top1 = [p["top"][0]["label"]
                 for p in json.loads(run("predict", out / "model.onnx", folder, "--json")[1])["predictions"]]
    torch_top1 = [p["top"][0]["label"]
                  for p in json.loads(run("predict", "mt-test", folder, "--json")[1])["predictions"]]
    assert len(onnx_top1) == 512 and onnx_top1 == torch_top1
    truth = [fashion_test.classes[int(y)] for y in fashion_test.labels[:512]]
    assert np.mean([a == b for a, b in zip(onnx_top1, truth)]) > 0.8  # mt-test's recorded accuracy is 0.8371
