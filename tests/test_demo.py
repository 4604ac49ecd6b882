"""``menas-zoo demo``: a PNG grid of test images with predicted and true labels, mistakes counted and marked."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from menas_zoo.cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout, result.stderr


def test_demo_writes_a_grid_and_counts_mistakes(tiny_export_artifact, tmp_path, fashion_test):
    out = tmp_path / "demo.png"
    result, stdout, _ = run("demo", tiny_export_artifact, "--out", out, "--count", "9", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(stdout)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 200
        pixels = np.asarray(img.convert("RGB"))
    assert summary["images"] == 9 and summary["correct"] + len(summary["mistakes"]) == 9
    for m in summary["mistakes"]:
        assert (m["true"] != m["predicted"]
                and fashion_test.classes[int(fashion_test.labels[m["index"]])] == m["true"])
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum()
    assert (red > 0) == bool(summary["mistakes"])  # a mistake is marked in red, a clean grid has none
    again = json.loads(run("demo", tiny_export_artifact, "--out", tmp_path / "again.png", "--count", "9", "--seed", "3",
                           "--json")[1])
    assert again["mistakes"] == summary["mistakes"]  # the same seed shows the same images


def test_demo_refuses_a_non_png_out_in_one_line(tiny_export_artifact, tmp_path):
    result, _, stderr = run("demo", tiny_export_artifact, "--out", tmp_path / "demo.jpg")
    assert result.exit_code == 2 and stderr == f"error: --out must be a .png file, got {tmp_path / 'demo.jpg'}\n"
    assert not (tmp_path / "demo.jpg").exists()
