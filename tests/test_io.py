"""Atomic writes: whatever writer fills the temporary file, the final file has normal permissions."""

import stat

import torch
from conftest import TINY_GENOTYPE
from safetensors.torch import save_file

from menas_zoo import io
from menas_zoo.costs import genotype_cost
from menas_zoo.io import atomic_path
from menas_zoo.nets import build_model
from menas_zoo.search import SearchConfig
from menas_zoo.search.state import RunState, TrialRecord
from menas_zoo.slim import channel_masks, mask_summary, materialize
from menas_zoo.space import resolve_genotype


def test_atomic_files_get_the_umask_permissions_even_when_the_writer_recreates_them(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_UMASK", 0o022)  # the usual umask; mkstemp's own files are 0600
    with atomic_path(tmp_path / "plain.txt") as tmp:
        tmp.write_text("x")
    with atomic_path(tmp_path / "weights.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))  # safetensors replaces the temporary file
    for name in ("plain.txt", "weights.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "weights.safetensors"]


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_search_s_individual_folders_get_the_umask_permissions(tmp_path, monkeypatch, tiny_profile):
    monkeypatch.setattr(io, "_UMASK", 0o027)  # neither mkdtemp's 0700 / mkstemp's 0600 nor a usual umask
    child = build_model(resolve_genotype(TINY_GENOTYPE))
    masks = channel_masks(child, 0.25, min_channels=4)
    ticket = materialize(child, masks)
    cost = genotype_cost(ticket.genotype)
    record = TrialRecord(index=0, generation=0, op="random", parent=None, second_parent=None, genotype=ticket.genotype,
                         trained_genotype=child.genotype, accuracy=0.5, trained_accuracy=0.5, fitness=0.5,
                         macs=cost.macs, params=cost.params, latency_ms=None, epochs=1, stopped_early=False,
                         seconds=1.0, elapsed=1.0, masks=mask_summary(masks))
    state = RunState.create(tmp_path / "run", SearchConfig(profile=tiny_profile))
    state.add_trial(record, ticket.state_dict(), masks)
    folder = state.ticket_dir(0)
    assert mode(folder) == 0o750
    assert {p.name: mode(p) for p in folder.iterdir()} == {name: 0o640 for name in
                                                           ("config.json", "model.safetensors", "masks.safetensors")}
    assert mode(state.out / "trials.jsonl") == mode(state.out / "state.json") == 0o640
