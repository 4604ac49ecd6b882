"""Ref resolution: local folder -> HF cache at the pin -> bundled copy -> Hub, and its failures."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_GENOTYPE
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import save_file

from menas_zoo.artifact import file_sha256
from menas_zoo.errors import MenasError
from menas_zoo.hub import registry
from menas_zoo.hub.registry import ZooEntry, get_entry
from menas_zoo.hub.resolve import create_model, load_source, parse_hub_ref, resolve, resolve_model
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port: connections are refused at once
MENAS_ZOO = Path(sys.executable).with_name("menas-zoo")  # the installed console script


def test_local_folder_comes_first(tiny_artifact):
    resolved = resolve(str(tiny_artifact), offline=True)
    assert (resolved.source, resolved.path) == ("local", tiny_artifact)


def test_registered_name_offline_with_an_empty_cache_uses_the_bundled_copy(tmp_path):
    resolved = resolve("mt-test", offline=True, cache=tmp_path)
    assert resolved.source == "bundled"
    model = create_model("mt-test", offline=True, cache=tmp_path)
    assert model.zoo_config["labels"][0] == "T-shirt/top" and not model.training


@pytest.mark.parametrize("ref", ["hf-hub:", "hf-hub:justname", "hf-hub:a/b/c", "hf-hub:a/b@", "hf-hub:a/../b",
                                 "hf-hub:a/b@rev with space"])
def test_malformed_hub_refs(ref):
    with pytest.raises(MenasError, match="malformed Hub ref"):
        parse_hub_ref(ref)


def test_hub_ref_with_revision():
    assert parse_hub_ref("hf-hub:menas-zoo/mt-test@v1.0") == ("menas-zoo/mt-test", "v1.0")
    assert parse_hub_ref("hf-hub:menas-zoo/mt-test") == ("menas-zoo/mt-test", None)


def test_offline_unresolvable_ref_fails_fast_with_advice(tmp_path):
    start = time.perf_counter()
    with pytest.raises(MenasError, match="HF_HUB_OFFLINE"):
        resolve("hf-hub:menas/absent", offline=True, cache=tmp_path, endpoint=UNREACHABLE)
    assert time.perf_counter() - start < 1.0


def test_unreachable_hub_is_one_clear_error(tmp_path):
    start = time.perf_counter()
    with pytest.raises(MenasError, match=f"cannot reach the Hub at {UNREACHABLE}"):
        resolve("hf-hub:menas/absent", offline=False, cache=tmp_path, endpoint=UNREACHABLE)
    assert time.perf_counter() - start < 5.0  # no retry loop


def test_bundled_copy_with_a_wrong_sha256_is_refused(monkeypatch, tmp_path):
    entry = get_entry("mt-test")
    bad = ZooEntry(**{**entry.__dict__, "files": {**entry.files, "model.safetensors": "0" * 64}})
    monkeypatch.setitem(registry._entries(), "mt-test", bad)
    with pytest.raises(MenasError, match="bundled copy of mt-test: sha256 mismatch for model.safetensors"):
        resolve("mt-test", offline=True, cache=tmp_path)


# -- resolve_model: every kind of REF of export and bench, with the model's own normalization ----------

def test_resolve_model_of_an_artifact_carries_its_normalization_labels_and_hash(tiny_artifact):
    source = resolve_model(str(tiny_artifact), offline=True)
    spec = json.loads((tiny_artifact / "config.json").read_text())["input_spec"]
    assert (source.kind, source.ref, source.revision) == ("artifact", str(tiny_artifact), None)
    assert (source.mean, source.std) == (spec["mean"], spec["std"]) and source.labels[0] == "T-shirt/top"
    assert source.weights_sha256 == file_sha256(tiny_artifact / "model.safetensors") and not source.model.training


def test_resolve_model_of_a_zoo_name_is_the_pinned_hub_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    source = resolve_model("mt-test", offline=True)
    entry = get_entry("mt-test")
    assert (source.kind, source.revision) == ("hub", entry.revision)
    assert source.weights_sha256 == entry.files["model.safetensors"] and source.mean is not None
    loaded = load_source("mt-test", offline=True)  # what predict loads: the same, genotype refs aside
    assert dataclasses.replace(loaded, model=source.model) == source


def test_resolve_model_of_a_genotype_takes_weights_or_fresh_ones(tmp_path):
    torch.manual_seed(1)
    trained = build_model(resolve_genotype(TINY_GENOTYPE))
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(weights))
    source = resolve_model(TINY_GENOTYPE, weights=weights)
    assert (source.kind, source.mean, source.std, source.labels) == ("genotype", None, None, None)
    assert source.weights_sha256 == file_sha256(weights) and not source.model.training
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in source.model.state_dict().items())
    fresh = resolve_model(TINY_GENOTYPE, random_init=True)
    assert fresh.weights_sha256 is None and fresh.model.genotype == trained.genotype


@pytest.mark.parametrize("ref, kwargs, message", [
    (TINY_GENOTYPE, {}, f"{TINY_GENOTYPE!r} is a genotype, not a trained model: add --weights model.safetensors, "
                        "or --random-init to time an untrained network"),
    (TINY_GENOTYPE, {"weights": "w.safetensors", "random_init": True},
     "give either --weights or --random-init, not both"),
    ("stem8 / k3_zz / head32", {}, "stage 1, block 1 'k3_zz': unknown field 'zz'"),
    ("mt-tst", {}, "unknown model 'mt-tst'"),
])
def test_resolve_model_says_what_is_wrong_with_a_ref(ref, kwargs, message):
    with pytest.raises(MenasError) as caught:
        resolve_model(ref, offline=True, **kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


def test_resolve_model_with_the_hub_unreachable_says_so_not_genotype(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MenasError, match=f"cannot reach the Hub at {UNREACHABLE}"):
        resolve_model("hf-hub:menas/absent", offline=False, endpoint=UNREACHABLE)


def _publish(hub_servers, folder, repo_id):
    api = HfApi(endpoint=hub_servers.write_url, token=hub_servers.token)
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder).oid


def test_cache_at_the_pinned_revision_comes_before_bundled_and_hub(hub_servers, tiny_artifact, tmp_path, monkeypatch):
    commit = _publish(hub_servers, tiny_artifact, "menas/cached")
    cache = tmp_path / "cache"
    snapshot_download("menas/cached", revision=commit, cache_dir=cache, endpoint=hub_servers.read_url)
    files = {name: file_sha256(tiny_artifact / name) for name in ("config.json", "model.safetensors")}
    entry = ZooEntry(name="mt-cached", repo_id="menas/cached", revision=commit, files=files, bundled=True)
    monkeypatch.setitem(registry._entries(), "mt-cached", entry)
    resolved = resolve("mt-cached", offline=True, cache=cache)  # bundled=True but no bundled folder: never reached
    assert (resolved.source, resolved.revision) == ("cache", commit)
    assert resolve(f"hf-hub:menas/cached@{commit}", offline=True, cache=cache).source == "cache"
    # a damaged cached blob fails its pin instead of loading
    blob = (resolved.path / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(MenasError, match="cached copy of mt-cached: sha256 mismatch"):
        resolve("mt-cached", offline=True, cache=cache)


def test_a_repo_with_only_pickles_is_refused(hub_servers, tmp_path):
    folder = tmp_path / "pickles"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"not going to be opened")
    commit = _publish(hub_servers, folder, "menas/pickles")
    with pytest.raises(MenasError, match=r"only pickled weights \(pytorch_model.bin\); menas-zoo never unpickles"):
        resolve(f"hf-hub:menas/pickles@{commit}", offline=False, endpoint=hub_servers.read_url, cache=tmp_path / "c")


def run_cli(*args, **env):
    full_env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    start = time.perf_counter()
    result = subprocess.run([str(MENAS_ZOO), *args], capture_output=True, text=True, env=full_env, timeout=120)
    return result, time.perf_counter() - start


def test_cli_load_registered_model_offline_with_empty_hf_home(tmp_path):
    result, seconds = run_cli("load", "mt-test", "--json", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path),
                              HF_ENDPOINT=UNREACHABLE)
    assert result.returncode == 0, result.stderr
    assert '"source": "bundled"' in result.stdout
    print(f"offline `menas-zoo load mt-test` with an empty HF_HOME: {seconds:.2f} s wall")


def test_cli_offline_unresolvable_ref_is_one_line(tmp_path):
    result, seconds = run_cli("load", "hf-hub:menas/absent", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0]
    print(f"offline unresolvable ref, whole CLI process: {seconds:.2f} s wall")
