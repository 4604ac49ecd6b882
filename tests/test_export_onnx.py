"""ONNX export: one checked file, opset and exporter as asked, a batch axis that really is dynamic."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_fixtures import EXPORT_BATCH

from menas_zoo.errors import MenasError
from menas_zoo.export import export_onnx, ort_session
from menas_zoo.export import onnx as onnx_export


def test_default_export_is_one_checked_file_with_dynamic_batch(tiny_onnx):
    result, path = tiny_onnx
    assert (result.exporter, result.opset, result.dynamic_batch) == ("dynamo", 18, True)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no external data, no temp files
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    assert result.size_bytes == path.stat().st_size


@pytest.mark.parametrize("batch", [1, 5])
def test_exported_model_runs_at_batches_it_was_not_traced_with(tiny_onnx, tiny_model, batch):
    assert batch != EXPORT_BATCH
    _, path = tiny_onnx
    x = torch.randn(batch, 1, 28, 28)
    (logits,) = ort_session(path).run(None, {"input": x.numpy()})
    np.testing.assert_allclose(logits, tiny_model(x).detach().numpy(), atol=1e-4)


def test_torchscript_exporter_and_ort_offline_optimization(tiny_model, tmp_path):
    result = export_onnx(tiny_model, tmp_path / "ts.onnx", exporter="torchscript", optimize=True)
    assert (result.exporter, result.optimized) == ("torchscript", True)
    x = torch.randn(3, 1, 28, 28)
    (logits,) = ort_session(tmp_path / "ts.onnx").run(None, {"input": x.numpy()})
    np.testing.assert_allclose(logits, tiny_model(x).detach().numpy(), atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.onnx"]


@pytest.mark.parametrize("opset, exporter", [(11, "dynamo"), (17, "dynamo"), (99, "dynamo"), (21, "torchscript")])
def test_unsupported_opset_is_one_clear_error(opset, exporter):
    with pytest.raises(MenasError, match=f"opset {opset} is not supported by the {exporter} exporter; use"):
        onnx_export.check_opset(opset, exporter)


def test_unknown_exporter_is_refused(tiny_model, tmp_path):
    with pytest.raises(MenasError, match="unknown exporter 'jit'"):
        export_onnx(tiny_model, tmp_path / "m.onnx", exporter="jit")
    assert not any(tmp_path.iterdir())


def test_failed_export_leaves_nothing_behind(tiny_model, tmp_path, monkeypatch):
    def broken(*_, **__):
        raise MenasError("ONNX export failed: unsupported operator")

    monkeypatch.setattr(onnx_export, "_run_exporter", broken)
    with pytest.raises(MenasError, match="unsupported operator"):
        export_onnx(tiny_model, tmp_path / "m.onnx", exporter="torchscript")
    assert not any(tmp_path.iterdir())


def test_export_does_not_change_the_callers_model(tiny_model, tmp_path):
    tiny_model.train()
    try:
        export_onnx(tiny_model, tmp_path / "m.onnx", exporter="torchscript")
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_a_file_that_is_not_onnx_fails_to_load_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(MenasError, match="does not load in ONNX Runtime") as err:
        ort_session(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(MenasError, match="fails the ONNX checker"):
        onnx_export.check_onnx(bad)


def test_exported_file_carries_no_stack_traces_or_source_paths(tiny_onnx):
    """The dynamo exporter records a Python stack trace per node; a shipped file must not name the
    exporting machine's paths."""
    _, path = tiny_onnx
    model = onnx.load(str(path))
    keys = {p.key for node in model.graph.node for p in node.metadata_props}
    assert keys and onnx_export.STACK_TRACE_KEY not in keys  # other metadata (name scopes) stays
    package_dir = str(Path(onnx_export.__file__).parents[1])  # where nets.py, which the traces named, lives
    assert package_dir.encode() not in path.read_bytes()
