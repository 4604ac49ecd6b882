"""Shared fixtures. Data fixtures read the Fashion-MNIST Debian package (installed by `make test`)."""

import pytest
import torch

from menas_zoo.data import load_dataset

#: the export tests' fixtures (tiny model, its ONNX file and artifact), one definition a session
pytest_plugins = ["export_fixtures"]


@pytest.fixture(scope="session")
def fashion_test():
    """The real Fashion-MNIST test split (uint8 images, labels)."""
    return load_dataset("fashion-mnist", split="test")


@pytest.fixture(scope="session")
def real_batch(fashion_test):
    """64 real test images, normalized as the models see them: (64, 1, 28, 28) float."""
    images = fashion_test.images[:64].float().div(255)
    return (images - fashion_test.mean[0]) / fashion_test.std[0]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- zoo: tiny artifacts and the local Hub servers ------------------------------------------------

#: the tiny network of the tests: two blocks (one with SE), a few thousand parameters, 28 px in
TINY_GENOTYPE = "stem8 / k3_h16_c8_s2_se_re / k3_h24_c16_s2_hs / head32"


def randomize_bn(model):
    """BN gammas, betas and statistics far from their defaults, as after training, so slicing, copying
    and export mistakes cannot hide behind identities or near-constant logits. Seeded by the caller."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def tiny_artifact(tmp_path, fashion_test):
    """A small untrained artifact whose accuracy is measured on the first 256 real test images."""
    from menas_zoo.artifact import save_artifact
    from menas_zoo.nets import build_model
    from menas_zoo.space import resolve_genotype
    from menas_zoo.train import evaluate

    model = build_model(resolve_genotype(TINY_GENOTYPE)).eval()
    subset = fashion_test.subset(torch.arange(256))
    accuracy = {"value": evaluate(model, subset)["acc"], "dataset": "fashion-mnist", "split": "test[:256]"}
    spec = {"in_chans": 1, "resolution": 28, "mean": list(fashion_test.mean), "std": list(fashion_test.std)}
    return save_artifact(tmp_path / "tiny", model, metrics={"accuracy": accuracy}, input_spec=spec,
                         labels=fashion_test.classes, provenance={"run_id": "tiny-test", "seed": 0})


@pytest.fixture(scope="session")
def hub_servers(tmp_path_factory):
    """olah (read, offline mode) and the local write endpoint on free ports, sharing one mirrors folder.

    A missing olah fails these tests (locally and in CI alike), so they can never pass by not running.
    """
    import huggingface_hub.constants
    from hub_servers import olah_cli, run_hub_servers

    olah = olah_cli()
    if olah is None:
        pytest.fail("olah not found: set MENAS_OLAH_CLI or run `make test` (installs it into .venv-olah)")
    # huggingface_hub uploads through Xet by default, which no local server speaks; read at call time.
    xet = huggingface_hub.constants.HF_HUB_DISABLE_XET
    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    try:
        with run_hub_servers(tmp_path_factory.mktemp("hub"), olah) as servers:
            yield servers
    finally:
        huggingface_hub.constants.HF_HUB_DISABLE_XET = xet


@pytest.fixture
def no_hf_credentials(monkeypatch, tmp_path):
    """An empty HF_HOME and no HF_TOKEN: no saved login, no cached models."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub resolved the saved token's path from HF_HOME at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf-home"


# -- search fixtures: a tiny space and a tiny dataset, so whole searches run in seconds ---------------

@pytest.fixture(scope="session")
def tiny_profile():
    """A two-stage profile of networks with a few thousand parameters (28 px, strides 2 and 2)."""
    from menas_zoo.space.sampling import SearchProfile

    return SearchProfile(name="small", resolution=28, stage_strides=(2, 2), base_widths=(8, 16), max_depth=2,
                         stem_choices=(8,), head_choices=(16, 32), fc_choices=(0, 16), kernels=(3, 5),
                         expansions=(1, 2, 3), width_mults=(1.0, 2.0))


@pytest.fixture(scope="session")
def tiny_splits():
    """256 training and 256 validation images of Fashion-MNIST (validation carved from the train split)."""
    from menas_zoo.data import load_splits

    return load_splits("fashion-mnist", val_size=256, seed=0, train_subset=256)


@pytest.fixture(scope="session")
def train_splits():
    """2,048 training and 500 validation images of Fashion-MNIST: enough for a network to learn in 3 epochs."""
    from menas_zoo.data import load_splits

    return load_splits("fashion-mnist", val_size=500, seed=0, train_subset=2048)


@pytest.fixture
def one_thread():
    """Training with one torch thread: faster on a busy machine and bitwise repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
