"""Parity: PyTorch and ONNX Runtime agree on real images, and a model that drifts is caught."""

import dataclasses

import onnx
import pytest
import torch
from export_fixtures import EXPORT_BATCH
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


def test_model_images_are_normalized_with_the_models_own_mean_and_std(tiny_model, fashion_test):
    from menas_zoo.export import model_images, real_images

    own, data = model_images("fashion-mnist", None, tiny_model.genotype, 8, mean=[0.5], std=[0.25])
    assert torch.equal(own, ((fashion_test.images[:8].float() / 255 - 0.5) / 0.25).contiguous())
    default, _ = model_images("fashion-mnist", None, tiny_model.genotype, 8)  # none carried: the dataset's
    assert torch.equal(default, real_images(fashion_test, 8))
    everything, _ = model_images("fashion-mnist", None, tiny_model.genotype, 10 ** 9)
    assert len(everything) == len(data) == len(fashion_test)


def test_model_images_refuse_a_dataset_of_another_shape(tiny_model):
    from menas_zoo.export import model_images

    colour = dataclasses.replace(tiny_model.genotype, in_chans=3)
    with pytest.raises(MenasError) as caught:
        model_images("fashion-mnist", None, colour, 8, split="train")
    assert str(caught.value) == ("the model reads 3x28px images but fashion-mnist is 1x28px; pass --dataset/--data-dir "
                                 "with matching images")
