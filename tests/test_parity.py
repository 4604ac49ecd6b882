"""Parity: PyTorch and ONNX Runtime agree on real images, and a model that drifts is caught."""

import onnx
import pytest
from export_fixtures import EXPORT_BATCH, fashion_test_split, parity_images, tiny_model, tiny_onnx  # noqa: F401
from onnx import numpy_helper

from menas_zoo.errors import MenasError
from menas_zoo.export import ParityError, check_parity


def test_exported_model_matches_pytorch_on_real_images(tiny_model, tiny_onnx, parity_images):
    _, path = tiny_onnx
    result = check_parity(tiny_model, path, parity_images, batch_size=16, export_batch=EXPORT_BATCH)
    assert result.passed
    assert result.images == 256 and result.batch_size == 16
    assert result.max_abs_diff <= 1e-4 and result.top1_agreement == 1.0
    assert result.as_dict()["passed"] is True


def test_a_drifted_model_fails_parity(tiny_model, tiny_onnx, parity_images, tmp_path):
    _, path = tiny_onnx
    model = onnx.load(str(path))
    # Perturb the classifier's weights for one class, as a broken conversion would.
    weight = next(init for init in model.graph.initializer if init.name == "classifier.weight")
    values = numpy_helper.to_array(weight).copy()
    values[3] += 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    drifted = tmp_path / "drifted.onnx"
    onnx.save(model, str(drifted))
    with pytest.raises(ParityError, match=r"parity failed for .*drifted.onnx: max \|logit diff\|"):
        check_parity(tiny_model, drifted, parity_images[:64], batch_size=16)
    result = check_parity(tiny_model, drifted, parity_images[:64], batch_size=16, strict=False)
    assert not result.passed and result.max_abs_diff > 1e-2


def test_parity_refuses_the_export_batch_size(tiny_model, tiny_onnx, parity_images):
    with pytest.raises(MenasError, match="batch size other than the export's"):
        check_parity(tiny_model, tiny_onnx[1], parity_images, batch_size=EXPORT_BATCH, export_batch=EXPORT_BATCH)
