"""Atomic writes: whatever writer fills the temporary file, the final file has normal permissions."""

import stat

import torch
from safetensors.torch import save_file

from menas_zoo import io
from menas_zoo.io import atomic_path


def test_atomic_files_get_the_umask_permissions_even_when_the_writer_recreates_them(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_UMASK", 0o022)  # the usual umask; mkstemp's own files are 0600
    with atomic_path(tmp_path / "plain.txt") as tmp:
        tmp.write_text("x")
    with atomic_path(tmp_path / "weights.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))  # safetensors replaces the temporary file
    for name in ("plain.txt", "weights.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "weights.safetensors"]
