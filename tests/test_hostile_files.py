"""Absurd or hostile artifact files: refused in one line, before memory is taken.

A config.json can ask for any network; the weights file's header is compared with the network built on
the ``meta`` device before any tensor exists, so a 16 KB file cannot make us allocate gigabytes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from menas_zoo.artifact import load_artifact
from menas_zoo.cli import app
from menas_zoo.hub import registry
from menas_zoo.hub.registry import ZooEntry, get_entry
from menas_zoo.space import resolve_genotype


def edit_config(folder: Path, **changes) -> Path:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def genotype_dict(**changes):
    return {**resolve_genotype("stem8 / k3_h16_c8_s2_re / head32").to_dict(), **changes}


def cli_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


HOSTILE_GENOTYPES = {
    "stem of 30,000,000 channels": genotype_dict(stem=30_000_000),
    "10^9 classes": genotype_dict(num_classes=10 ** 9),
    "40,000 blocks": genotype_dict(stages=[["k3_c8_s1_re"] * 40_000]),
    "largest allowed widths, tiny file": genotype_dict(stem=8192, head=8192, fc=8192, num_classes=100_000,
                                                       stages=[["k15_h8192_c8192_s1_se8192_re"] * 8]),
}


# Runs `menas-zoo load DIR` for each DIR in one fresh process and prints, per DIR, the exit code, how much
# the process's peak RSS has grown since the imports, and the seconds taken (importing a CUDA build of
# torch alone maps ~0.9 GB of libraries, which no config can change).
MEASURE_LOADS = """
import resource, sys, time
from menas_zoo.cli import app
import menas_zoo.hub.resolve  # what load needs (torch): imported before the clock and the baseline start
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for folder in sys.argv[1:]:
    start = time.perf_counter()
    try:
        app(["load", folder])
    except SystemExit as exc:
        code = exc.code
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(code, f"{grown / 1024:.1f}", f"{time.perf_counter() - start:.2f}", f"{before / 1024:.0f}")
"""


def test_hostile_configs_are_refused_fast_and_small(tiny_artifact, tmp_path):
    """The CLI's load: one line and exit 2 each, within 5 s, peak memory growing by far less than 1 GB."""
    folders = []
    for i, genotype in enumerate(HOSTILE_GENOTYPES.values()):
        folder = tmp_path / f"hostile-{i}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes((tiny_artifact / "model.safetensors").read_bytes())
        (folder / "config.json").write_text((tiny_artifact / "config.json").read_text())
        folders.append(str(edit_config(folder, genotype=genotype)))
        assert (folder / "model.safetensors").stat().st_size < 20_000
    result = subprocess.run([sys.executable, "-c", MEASURE_LOADS, *folders], capture_output=True, text=True,
                            timeout=300)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(folders) and all(e.startswith("error: ") for e in errors), result.stderr
    assert all("genotype" in e or "does not match" in e for e in errors), errors
    for case, line in zip(HOSTILE_GENOTYPES, result.stdout.strip().splitlines()):
        code, grown_mb, seconds, baseline_mb = line.split()
        print(f"{case}: refused in {seconds} s; peak RSS so far +{grown_mb} MB over {baseline_mb} MB after imports")
        assert code == "2" and float(seconds) < 5 and float(grown_mb) < 256


def test_deeply_nested_and_oversized_configs(tiny_artifact):
    config = tiny_artifact / "config.json"
    config.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in cli_error("load", tiny_artifact)
    config.write_text(" " * (2 << 20) + "{}")
    assert "over 1024 KiB" in cli_error("load", tiny_artifact)
    assert "nested too deeply" in cli_error("info", '{"a":' * 100_000 + "1" + "}" * 100_000)


@pytest.mark.parametrize("changes, message", [
    ({"metrics": None}, "'metrics' must be an object"),
    ({"metrics": "fast"}, "'metrics' must be an object"),
    ({"metrics": {"params": "1", "macs": 2}}, "metrics.params must be an integer"),
    ({"metrics": {"params": 1, "macs": 2, "accuracy": 0.9}}, "metrics.accuracy must be an object"),
    ({"metrics": {"params": 1, "macs": 2, "latency": {"ms": "quick"}}}, "metrics.latency must be an object"),
    ({"input_spec": "1x28x28"}, "'input_spec' must be an object"),
    ({"input_spec": {"mean": "0.5"}}, "input_spec.mean must be a list of numbers"),
    ({"labels": [1, 2]}, "'labels' must be a list of strings"),
])
def test_mistyped_config_fields_are_one_line_in_load_and_export(tiny_artifact, tmp_path, changes, message):
    edit_config(tiny_artifact, **changes)
    assert message in cli_error("load", tiny_artifact)
    assert message in cli_error("export", tiny_artifact, "--out", tmp_path / "out")


@pytest.mark.parametrize("dtype, message", [(torch.float64, "wrong dtype"), (torch.int8, "wrong dtype"),
                                            (None, "NaN or infinite")])
def test_weights_of_the_wrong_dtype_or_nan_are_refused(tiny_artifact, tmp_path, dtype, message):
    weights = tiny_artifact / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(dtype) if dtype is not None else torch.full_like(state[key], float("nan"))
    save_file(state, str(weights))
    assert message in cli_error("load", tiny_artifact)
    assert message in cli_error("export", tiny_artifact, "--out", tmp_path / "out")


@pytest.fixture
def ticket_artifact(tmp_path):
    """An artifact with masks: parent with 16 hidden channels, ticket keeps 8."""
    from menas_zoo.artifact import save_artifact
    from menas_zoo.nets import build_model
    from menas_zoo.slim import materialize

    parent = build_model(resolve_genotype("stem8 / k3_h16_c8_s2_re / head32")).eval()
    masks = {"stages.0.0": torch.arange(16) % 2 == 0}
    return save_artifact(tmp_path / "ticket", materialize(parent, masks), parent_genotype=parent.genotype, masks=masks)


@pytest.mark.parametrize("masks, message", [
    ({"stages.0.0": torch.ones(12, dtype=torch.bool)}, "has 12 entries, but the block has 16"),
    ({"stages.3.0": torch.ones(16, dtype=torch.bool)}, "matches no prunable block"),
    ({"stages.0.0": torch.ones(2, 2, 4, dtype=torch.bool)}, "must be a 1-D bool tensor"),
    ({"stages.0.0": torch.ones(16)}, "must be a 1-D bool tensor, got F32"),
])
def test_bad_masks_are_refused(ticket_artifact, masks, message):
    assert load_artifact(ticket_artifact).masks is not None  # the good one loads
    save_file(masks, str(ticket_artifact / "masks.safetensors"))
    assert message in cli_error("load", ticket_artifact)


def test_export_reports_the_real_cause_of_a_resolution_failure(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "cannot reach the Hub at http://127.0.0.1:9" in cli_error("export", "hf-hub:org/name", "--out", out)
    assert "mt-test" in cli_error("export", "mt-tset", "--out", out)  # a typo names the closest model
    entry = get_entry("mt-test")
    bad = ZooEntry(**{**entry.__dict__, "files": {**entry.files, "model.safetensors": "0" * 64}})
    monkeypatch.setitem(registry._entries(), "mt-test", bad)
    assert "sha256 mismatch" in cli_error("export", "mt-test", "--out", out)
    assert "is a genotype, not a trained model" in cli_error("export", "mobilenetv3-small", "--out", out)
    assert not out.exists() or not any(out.iterdir())
