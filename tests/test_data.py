"""Datasets and the batch loader: real Fashion-MNIST, seeded splits, CIFAR-10 and ImageFolder readers."""

import gzip
import re
import struct

import numpy as np
import pytest
import torch

from menas_zoo.data import (Augment, BatchLoader, load_cifar10, load_dataset, load_fashion_mnist, load_image_folder,
                            load_splits)
from menas_zoo.errors import MenasError


def test_fashion_mnist_is_complete(fashion_test):
    train = load_dataset("fashion-mnist", split="train")
    assert train.images.shape == (60000, 1, 28, 28) and fashion_test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.bincount(fashion_test.labels).tolist() == [1000] * 10


def test_validation_is_carved_from_train_with_a_seed():
    a = load_splits(val_size=1000, seed=1)
    b = load_splits(val_size=1000, seed=1)
    c = load_splits(val_size=1000, seed=2)
    assert len(a.train) == 59000 and len(a.val) == 1000 and a.test is None
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    # No validation image is also a training image of the same split (compare exact bytes).
    train_keys = {bytes(img.numpy()) for img in a.train.images[:59000]}
    assert sum(bytes(img.numpy()) in train_keys for img in a.val.images) <= 5  # Fashion-MNIST has a few duplicates


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_missing_data_says_how_to_install(tmp_path):
    with pytest.raises(MenasError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_corrupt_idx_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(MenasError, match="4 images but 3 labels"):
        load_fashion_mnist(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"\x01")
    with pytest.raises(MenasError, match="truncated"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(MenasError, match="cannot read|not an idx"):
        load_fashion_mnist(tmp_path)


def test_loader_normalizes_and_keeps_channels_last(fashion_test):
    batches = list(BatchLoader(fashion_test.subset(torch.arange(600)), batch_size=256))
    assert [len(y) for _, y in batches] == [256, 256, 88]
    x = torch.cat([b[0] for b in batches])
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


def test_random_crop_shifts_content_without_changing_it(fashion_test):
    data = fashion_test.subset(torch.arange(32))
    loader = BatchLoader(data, 32, augment=Augment(crop_padding=2, flip=False, erasing=0.0), channels_last=False,
                         generator=torch.Generator().manual_seed(0))
    (x, _), = list(loader)
    plain, = [b for b, _ in BatchLoader(data, 32, channels_last=False)]
    background = (0 - data.mean[0]) / data.std[0]
    for i in range(32):  # each augmented image is the original shifted by at most 2 pixels
        padded = torch.nn.functional.pad(plain[i], (2, 2, 2, 2), value=background)
        assert any(torch.allclose(padded[:, dy:dy + 28, dx:dx + 28], x[i], atol=1e-6)
                   for dy in range(5) for dx in range(5))


def test_erasing_and_flip_are_per_sample(fashion_test):
    data = fashion_test.subset(torch.arange(256))
    plain, = [b for b, _ in BatchLoader(data, 256, channels_last=False)]
    (erased, _), = list(BatchLoader(data, 256, augment=Augment(crop_padding=0, flip=False, erasing=1.0),
                                    channels_last=False))
    assert ((erased == 0) & (plain != 0)).flatten(1).any(1).all()  # every image got a rectangle erased to 0
    (flipped, _), = list(BatchLoader(data, 256, augment=Augment(crop_padding=0, flip=True, erasing=0.0),
                                     channels_last=False))
    is_flipped = [torch.equal(flipped[i], plain[i].flip(-1)) for i in range(256)]
    assert all(is_flipped[i] or torch.equal(flipped[i], plain[i]) for i in range(256))
    assert 64 < sum(is_flipped) < 192


def test_cifar10_binary_release(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        records = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], 1)
        records.astype(np.uint8).tofile(folder / f"{name}.bin")
    train = load_cifar10(tmp_path, "train")
    assert train.images.shape == (15, 3, 32, 32) and train.labels.max() < 10
    assert load_cifar10(tmp_path, "test").images.shape == (3, 3, 32, 32)


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 40, 3), 60 * i + (label == "dog") * 100, np.uint8)).save(
                    tmp_path / split / label / f"{i}.png")
    ds = load_image_folder(tmp_path, "train", in_chans=3, resolution=32)
    assert ds.images.shape == (4, 3, 32, 32) and ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(MenasError, match="not found"):
        load_image_folder(tmp_path / "nowhere")


def _png_folder(root, classes, per_class, size=(40, 30), colour=True):
    """A tiny ImageFolder tree of PNGs (train and test), each class a different brightness."""
    from PIL import Image

    for split in ("train", "test"):
        for c, label in enumerate(classes):
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                value = (20 * c + 7 * i) % 256
                pixels = np.full((size[1], size[0], 3) if colour else (size[1], size[0]), value, np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


def test_image_folder_is_read_as_the_network_reads(tmp_path):
    """load_dataset/load_splits convert and resize an image folder to the channels and resolution asked for."""
    root = _png_folder(tmp_path, ["a", "b"], 3)
    grey = load_dataset("imagefolder", root, "train", in_chans=1, resolution=20)
    assert grey.images.shape == (6, 1, 20, 20) and grey.classes == ["a", "b"] and len(grey.mean) == 1
    assert load_dataset("imagefolder", root, "test").images.shape == (6, 3, 32, 32)  # the default: CIFAR-10's shape
    splits = load_splits("imagefolder", root, val_size=2, with_test=True, in_chans=3, resolution=16)
    assert splits.train.images.shape[1:] == splits.val.images.shape[1:] == splits.test.images.shape[1:] == (3, 16, 16)
    assert splits.input_spec()["resolution"] == 16
    with pytest.raises(MenasError, match="1 .grayscale. or 3 .RGB. channels, not 2"):
        load_dataset("imagefolder", root, in_chans=2)
    # Fashion-MNIST is what it is; the callers that train or evaluate compare shapes.
    assert load_dataset("fashion-mnist", split="test", resolution=20).resolution == 28


def test_train_artifact_on_an_image_folder_at_the_genotype_s_shape(tmp_path, one_thread):
    from menas_zoo.artifact import load_artifact
    from menas_zoo.space import Genotype
    from menas_zoo.train import TrainConfig, evaluate_test_split, train_artifact

    root = _png_folder(tmp_path / "images", ["x", "y"], 4)
    genotype = Genotype.from_compact("stem8 / k3_h16_c8_s2_re / head16", in_chans=1, resolution=20, num_classes=2)
    run = train_artifact(genotype, tmp_path / "run", TrainConfig(epochs=1, batch_size=4, device="cpu"),
                         dataset="imagefolder", data_dir=root, val_size=2, eval_test=True, progress=False)
    config = load_artifact(run.path).config
    assert (config["input_spec"]["in_chans"], config["input_spec"]["resolution"]) == (1, 20)
    assert config["labels"] == ["x", "y"] and 0 <= run.metrics["test_acc"] <= 1
    assert 0 <= evaluate_test_split(run.model, "imagefolder", root) <= 1  # load --eval-test reads it the same way


def test_cli_train_and_search_take_resolution_for_an_image_folder(tmp_path, one_thread):
    from typer.testing import CliRunner

    from menas_zoo.artifact import load_artifact
    from menas_zoo.cli import app

    root = _png_folder(tmp_path / "images", [f"c{i}" for i in range(10)], 2, colour=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "stem8 / k3_h16_c8_s2_re / head16", "--out", str(run), "--dataset",
                                      "imagefolder", "--data-dir", str(root), "--resolution", "24", "--epochs", "1",
                                      "--val-size", "4", "--batch-size", "8", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert load_artifact(run).config["input_spec"]["resolution"] == 24
    result = CliRunner().invoke(app, ["train", "stem8 / k3_h16_c8_s2_re / head16", "--out", str(tmp_path / "r2"),
                                      "--resolution", "24", "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 2 and "genotype expects 1x24px input but fashion-mnist is 1x28px" in result.stderr
    search = tmp_path / "search"
    result = CliRunner().invoke(app, ["search", "--out", str(search), "--dataset", "fashion-mnist",
                                      "--resolution", "24", "--val-size", "256", "--train-subset", "256"])
    assert result.exit_code == 2 and "fashion-mnist images are 28 px, not 24 px" in result.stderr
    assert not search.exists()


def test_a_search_reads_an_image_folder_at_its_resolution(tmp_path, tiny_profile, one_thread):
    from menas_zoo.search import SearchConfig, run_search

    root = _png_folder(tmp_path / "images", ["a", "b", "c"], 4)
    cfg = SearchConfig(strategy="evolution", profile=tiny_profile, population=2, generations=0, epochs=1, val_size=3,
                       dataset="imagefolder", data_dir=str(root), resolution=20, batch_size=4, device="cpu")
    result = run_search(cfg, tmp_path / "run", write_report=False)
    assert (result.state.config.in_chans, result.state.config.resolution, result.state.config.num_classes) == (3, 20, 3)
    assert all(t.genotype.resolution == 20 and t.genotype.in_chans == 3 for t in result.state.trials)
    resumed = run_search(None, tmp_path / "run", resume=True, write_report=False)  # reads the folder the same way
    assert resumed.state.finished and len(resumed.state.trials) == 2


def test_a_grayscale_image_folder_is_searched_and_trained_in_one_channel(tmp_path, tiny_profile, one_thread):
    """--in-chans 1 reads an image folder as grayscale in a search (and its resume) and in train; any other
    count than 1 or 3 is one line, and no run folder is left."""
    import dataclasses
    import json

    from typer.testing import CliRunner

    from menas_zoo.artifact import load_artifact
    from menas_zoo.cli import app
    from menas_zoo.errors import MenasError
    from menas_zoo.search import SearchConfig, run_search

    root = _png_folder(tmp_path / "images", ["a", "b", "c"], 4, colour=False)
    cfg = SearchConfig(strategy="evolution", profile=tiny_profile, population=2, generations=0, epochs=1, val_size=3,
                       dataset="imagefolder", data_dir=str(root), resolution=20, in_chans=1, batch_size=4,
                       device="cpu")
    result = run_search(cfg, tmp_path / "run", write_report=False)
    assert result.state.config.in_chans == 1 and all(t.genotype.in_chans == 1 for t in result.state.trials)
    assert load_artifact(result.state.ticket_dir(0)).config["input_spec"]["in_chans"] == 1
    resumed = run_search(None, tmp_path / "run", resume=True, write_report=False)  # reads the folder the same way
    assert resumed.state.finished and resumed.state.config.in_chans == 1
    with pytest.raises(MenasError, match="fashion-mnist images are 1-channel, not 3-channel .channels are chosen "
                                         "for an image folder only."):
        run_search(dataclasses.replace(cfg, dataset="fashion-mnist", data_dir=None, resolution=None, in_chans=3),
                   tmp_path / "run-fashion", write_report=False)
    assert not (tmp_path / "run-fashion").exists()

    search = tmp_path / "search"
    result = CliRunner().invoke(app, ["search", "--out", str(search), "--dataset", "imagefolder", "--data-dir",
                                      str(root), "--in-chans", "2"])
    assert result.exit_code == 2 and result.stderr == "error: --in-chans must be 1 (grayscale) or 3 (RGB), got 2\n"
    assert not search.exists()

    line = "stem8 / k3_h16_c8_s2_re / head16"  # 10 classes, as a one-line genotype has
    root = _png_folder(tmp_path / "ten", [f"c{i}" for i in range(10)], 2, colour=False)
    run = tmp_path / "train"
    result = CliRunner().invoke(app, ["train", line, "--out", str(run), "--dataset", "imagefolder", "--data-dir",
                                      str(root), "--in-chans", "3", "--resolution", "20", "--epochs", "1",
                                      "--val-size", "4", "--batch-size", "8", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert load_artifact(run).config["input_spec"]["in_chans"] == 3
    assert json.loads((run / "genotype.json").read_text())["in_chans"] == 3
    for value, message in (("2", "an image folder is read as 1 .grayscale. or 3 .RGB. channels, not 2"),
                           ("0", "in_chans must be an integer in 1..64, got 0")):
        result = CliRunner().invoke(app, ["train", line, "--out", str(tmp_path / f"bad-{value}"), "--dataset",
                                          "imagefolder", "--data-dir", str(root), "--in-chans", value, "--epochs", "1"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert re.search(message, result.stderr), result.stderr


def test_train_fits_the_head_to_an_image_folder_with_num_classes(tmp_path, one_thread):
    """A one-line genotype has 10 classes; on a 3-class folder train says how to fit the head, in one line
    and with no run folder, and --num-classes builds the head for 3."""
    import json

    from typer.testing import CliRunner

    from menas_zoo.artifact import load_artifact
    from menas_zoo.cli import app

    root = _png_folder(tmp_path / "images", ["a", "b", "c"], 4, colour=False)
    line = "stem8 / k3_h16_c8_s2_re / head16"
    args = ["--dataset", "imagefolder", "--data-dir", str(root), "--in-chans", "1", "--resolution", "20",
            "--epochs", "1", "--val-size", "3", "--batch-size", "4", "--device", "cpu", "--json"]
    refused = CliRunner().invoke(app, ["train", line, "--out", str(tmp_path / "refused"), *args])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.output
    assert "genotype has 10 classes but imagefolder has 3; pass --num-classes 3" in refused.stderr
    assert not (tmp_path / "refused").exists()

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", line, "--out", str(run), "--num-classes", "3", *args])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "genotype.json").read_text())["num_classes"] == 3
    assert load_artifact(run).model.classifier.out_features == 3
