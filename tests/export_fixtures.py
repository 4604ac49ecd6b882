"""Fixtures of the export tests: one tiny network, its artifact, and its ONNX file exported once.

Kept out of conftest.py so the export tests carry their own setup; test modules import what they use.
An imported fixture is a separate definition in each module, so session-wide values are memoized here:
the dynamo export (the default path) costs ~10 s on a small CPU and runs once per session.
"""

import pytest
import torch
from conftest import TINY_GENOTYPE, randomize_bn

from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype

TINY = TINY_GENOTYPE
EXPORT_BATCH = 2
_SESSION: dict = {}


def once(key, make):
    if key not in _SESSION:
        _SESSION[key] = make()
    return _SESSION[key]


@pytest.fixture(scope="session")
def tiny_model():
    return once("tiny_model", _make_tiny_model)


def _make_tiny_model():
    torch.manual_seed(0)
    return randomize_bn(build_model(resolve_genotype(TINY))).eval()  # logits with something to compare


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory):
    """(ExportResult, path) of the tiny model exported the default way: dynamo, opset 18, dynamic batch."""
    from menas_zoo.export import export_onnx

    def make():
        path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
        return export_onnx(tiny_model, path, export_batch=EXPORT_BATCH), path

    return once("tiny_onnx", make)


@pytest.fixture(scope="session")
def parity_images(fashion_test_split):
    from menas_zoo.export import real_images

    return once("parity_images", lambda: real_images(fashion_test_split, 256))


@pytest.fixture(scope="session")
def fashion_test_split():
    from menas_zoo.data import load_dataset

    return once("fashion_test", lambda: load_dataset("fashion-mnist", split="test"))


@pytest.fixture
def tiny_export_artifact(tiny_model, tmp_path, fashion_test_split):
    from menas_zoo.artifact import save_artifact

    spec = {"in_chans": 1, "resolution": 28, "mean": list(fashion_test_split.mean), "std": list(fashion_test_split.std)}
    return save_artifact(tmp_path / "tiny-artifact", tiny_model, input_spec=spec, labels=fashion_test_split.classes)
