"""Fixtures of the export tests: one tiny network, its artifact, and its ONNX file exported once.

A pytest plugin (``pytest_plugins`` in conftest.py), so each session fixture is one definition, built
once a session: the dynamo export (the default path) costs ~10 s on a small CPU.
"""

import pytest
import torch
from conftest import TINY_GENOTYPE, randomize_bn

from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype

TINY = TINY_GENOTYPE
EXPORT_BATCH = 2


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return randomize_bn(build_model(resolve_genotype(TINY))).eval()  # logits with something to compare


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory):
    """(ExportResult, path) of the tiny model exported the default way: dynamo, opset 18, dynamic batch."""
    from menas_zoo.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(tiny_model, path, export_batch=EXPORT_BATCH), path


@pytest.fixture(scope="session")
def parity_images(fashion_test):
    from menas_zoo.export import real_images

    return real_images(fashion_test, 256)


@pytest.fixture
def tiny_export_artifact(tiny_model, tmp_path, fashion_test):
    from menas_zoo.artifact import save_artifact

    spec = {"in_chans": 1, "resolution": 28, "mean": list(fashion_test.mean), "std": list(fashion_test.std)}
    return save_artifact(tmp_path / "tiny-artifact", tiny_model, input_spec=spec, labels=fashion_test.classes)
