"""Datasets as in-memory uint8 tensors, and a batch loader that augments whole batches at once.

Small-image datasets fit in memory many times over, so there are no worker processes: a batch is
gathered, moved to the device, and augmented there (per-sample random crop with padding, horizontal
flip, random erasing) with vectorized tensor ops. On 2 CPU cores this keeps both cores on the network
instead of on PIL, and on a GPU it keeps the data path off the host.

Sources: Fashion-MNIST from the idx.gz files of Debian's ``dataset-fashion-mnist`` package (the
default), CIFAR-10 from a local folder (the binary release, or torchvision's python release read
through an allow-list unpickler), and an ImageFolder tree for users' own data. The validation split
used for fitness is carved from the training set with a seed; the test split is only for final reports.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from menas_zoo.errors import MenasError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DATASETS = ("fashion-mnist", "cifar10", "imagefolder")


@dataclass
class ImageDataset:
    """Images as uint8 (N, C, H, W) with int64 labels, plus what a model needs to read them."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "custom"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def subset(self, index: torch.Tensor) -> ImageDataset:
        return ImageDataset(self.images[index], self.labels[index], self.classes, self.mean, self.std, self.name)


@dataclass
class DataSplits:
    """Train and validation (carved from the training set) and, for final reports only, test."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset | None = None

    def input_spec(self) -> dict:
        t = self.train
        return {"in_chans": t.in_chans, "resolution": t.resolution, "mean": list(t.mean), "std": list(t.std)}


# -- readers ---------------------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    """Read one idx(.gz) file (the MNIST family's format): magic, dims, then raw big-endian data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise MenasError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise MenasError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise MenasError(f"{path} is truncated: expected {math.prod(dims)} values, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(root: str | Path | None = None, split: str = "train") -> ImageDataset:
    root = Path(root or os.environ.get("MENAS_ZOO_FASHION_MNIST", FASHION_MNIST_DIR))
    prefix = "train" if split == "train" else "t10k"
    images_path, labels_path = (root / f"{prefix}-{kind}.gz" for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    if not images_path.exists() or not labels_path.exists():
        raise MenasError(f"Fashion-MNIST not found in {root}: install it with "
                         "'apt-get install dataset-fashion-mnist', or pass --data-dir DIR with the idx.gz files")
    images = torch.from_numpy(_read_idx(images_path).copy()).unsqueeze(1)  # (N, 1, 28, 28)
    labels = torch.from_numpy(_read_idx(labels_path).astype(np.int64))
    if len(images) != len(labels):
        raise MenasError(f"Fashion-MNIST in {root}: {len(images)} images but {len(labels)} labels")
    return ImageDataset(images, labels, FASHION_MNIST_CLASSES, (0.2860,), (0.3530,), "fashion-mnist")


class _CifarUnpickler(pickle.Unpickler):
    """torchvision's CIFAR-10 batches are pickles; allow only the numpy types they hold."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise MenasError(f"refusing to unpickle {module}.{name} from a CIFAR-10 batch file")
        return super().find_class(module, name)


def load_cifar10(root: str | Path, split: str = "train") -> ImageDataset:
    root = Path(root)
    binary = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
    python = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if all((binary / f"{n}.bin").exists() for n in names):
        raw = np.concatenate([np.fromfile(binary / f"{n}.bin", dtype=np.uint8).reshape(-1, 3073) for n in names])
        labels, images = raw[:, 0].astype(np.int64), raw[:, 1:].reshape(-1, 3, 32, 32)
    elif all((python / n).exists() for n in names):
        images_list, labels_list = [], []
        for n in names:
            with open(python / n, "rb") as fh:
                batch = _CifarUnpickler(fh, encoding="latin1").load()
            images_list.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels_list.append(np.asarray(batch["labels"], dtype=np.int64))
        images, labels = np.concatenate(images_list), np.concatenate(labels_list)
    else:
        raise MenasError(f"CIFAR-10 not found in {root}: expected cifar-10-batches-bin/ or cifar-10-batches-py/")
    return ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels), CIFAR10_CLASSES,
                        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar10")


def load_image_folder(root: str | Path, split: str = "train", in_chans: int = 3, resolution: int = 32) -> ImageDataset:
    """An ImageFolder tree (``root/train/<class>/*.png``, ``root/val`` or ``root/test``), converted to
    ``in_chans`` channels (1: grayscale, 3: RGB) and resized to ``resolution`` px in memory."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if in_chans not in (1, 3):
        raise MenasError(f"an image folder is read as 1 (grayscale) or 3 (RGB) channels, not {in_chans}")
    if not 1 <= resolution <= 2048:
        raise MenasError(f"an image folder's resolution must be between 1 and 2048 px, got {resolution}")
    folder = Path(root) / split
    if split == "test" and not folder.is_dir():
        folder = Path(root) / "val"
    if not folder.is_dir():
        raise MenasError(f"image folder {folder} not found: expected {root}/train/<class>/... and "
                         f"{root}/test/<class>/...")
    mode = "L" if in_chans == 1 else "RGB"
    tf = v2.Compose([v2.PILToTensor(), v2.Resize((resolution, resolution), antialias=True)])
    ds = ImageFolder(str(folder), loader=lambda p: _open_image(p, mode), transform=tf)
    images = torch.stack([img for img, _ in ds]) if len(ds) else torch.empty(0, in_chans, resolution, resolution)
    labels = torch.tensor(ds.targets, dtype=torch.int64)
    pixels = images.float().div(255)
    mean = tuple(pixels.mean((0, 2, 3)).tolist())
    std = tuple(pixels.std((0, 2, 3)).clamp_min(1e-3).tolist())
    return ImageDataset(images, labels, list(ds.classes), mean, std, f"imagefolder:{Path(root).name}")


def _open_image(path: str, mode: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert(mode)


#: how an image folder is read when the caller does not say (the shape of CIFAR-10)
IMAGE_FOLDER_CHANNELS, IMAGE_FOLDER_RESOLUTION = 3, 32


def load_dataset(name: str = "fashion-mnist", root: str | Path | None = None, split: str = "train", *,
                 in_chans: int | None = None, resolution: int | None = None) -> ImageDataset:
    """One split of a dataset. ``in_chans`` and ``resolution`` are what the network reads: an image folder
    is converted and resized to them (by default 3 channels, 32 px); Fashion-MNIST (1x28 px) and CIFAR-10
    (3x32 px) come as they are, and the callers that train or evaluate a network check the shape."""
    if name == "fashion-mnist":
        return load_fashion_mnist(root, split)
    if root is None:
        raise MenasError(f"dataset {name!r} needs --data-dir pointing at its folder")
    if name == "cifar10":
        return load_cifar10(root, split)
    if name == "imagefolder":
        return load_image_folder(root, split, in_chans=in_chans or IMAGE_FOLDER_CHANNELS,
                                 resolution=resolution or IMAGE_FOLDER_RESOLUTION)
    raise MenasError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def load_splits(name: str = "fashion-mnist", root: str | Path | None = None, *, val_size: int = 5000, seed: int = 0,
                train_subset: int | None = None, with_test: bool = False, in_chans: int | None = None,
                resolution: int | None = None) -> DataSplits:
    """Train/validation carved from the training set with ``seed``; test only when asked for. ``in_chans``
    and ``resolution`` as in :func:`load_dataset`."""
    shape = {"in_chans": in_chans, "resolution": resolution}
    full = load_dataset(name, root, "train", **shape)
    if not 0 < val_size < len(full):
        raise MenasError(f"validation size must be between 1 and {len(full) - 1}, got {val_size}")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    val, train = full.subset(perm[:val_size]), full.subset(perm[val_size:])
    if train_subset is not None:
        train = train.subset(torch.arange(min(train_subset, len(train))))
    test = load_dataset(name, root, "test", **shape) if with_test else None
    return DataSplits(train, val, test)


# -- batches ---------------------------------------------------------------------------------------

@dataclass
class Augment:
    """Per-sample augmentation applied to a whole batch on its device."""

    crop_padding: int = 2
    flip: bool = True
    erasing: float = 0.25  # probability of one random rectangle erased (after normalization, to 0)
    erase_scale: tuple[float, float] = (0.02, 0.25)
    erase_ratio: tuple[float, float] = (0.3, 3.3)


_RESIDENT: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, ImageDataset]] = {}


def resident(dataset: ImageDataset, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's uint8 images and labels on ``device``, copied there once per process: on a GPU no
    batch crosses the host bus (60k Fashion-MNIST images are 47 MB). On the CPU, the tensors themselves."""
    device = torch.device(device)
    if device.type == "cpu":
        return dataset.images, dataset.labels
    key = (id(dataset), str(device))
    cached = _RESIDENT.get(key)
    if cached is None or cached[2] is not dataset:  # the id of a freed dataset can be reused
        cached = (dataset.images.to(device), dataset.labels.to(device), dataset)
        while len(_RESIDENT) >= 4:  # a run needs its train, validation and test splits; free the oldest
            _RESIDENT.pop(next(iter(_RESIDENT)))
        _RESIDENT[key] = cached
    return cached[0], cached[1]


@dataclass
class BatchLoader:
    """Yields normalized float batches ``(B, C, H, W)`` (channels_last if asked) and labels."""

    dataset: ImageDataset
    batch_size: int = 256
    shuffle: bool = False
    augment: Augment | None = None
    device: torch.device | str = "cpu"
    channels_last: bool = True
    drop_last: bool = False
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        images, labels = resident(self.dataset, self.device)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(images.device)
        mean = torch.tensor(self.dataset.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.dataset.std, device=self.device).view(1, -1, 1, 1)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = images[idx].to(self.device, non_blocking=True).float().div_(255)
            y = labels[idx].to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self._augment_geometry(x)
            x = (x - mean) / std
            if self.augment is not None and self.augment.erasing > 0:
                x = self._erase(x)
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()), y

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator).to(self.device)

    def _augment_geometry(self, x: torch.Tensor) -> torch.Tensor:
        aug, (b, _, h, w) = self.augment, x.shape
        if aug.crop_padding:
            p = aug.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = (self._rand(b) * (2 * p + 1)).long()
            dx = (self._rand(b) * (2 * p + 1)).long()
            rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (B, H)
            cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (B, W)
            batch = torch.arange(b, device=x.device)[:, None, None]
            x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
        if aug.flip:
            flip = (self._rand(b) < 0.5).view(b, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        aug, (b, _, h, w) = self.augment, x.shape
        area = h * w * (aug.erase_scale[0] + self._rand(b) * (aug.erase_scale[1] - aug.erase_scale[0]))
        log_lo, log_hi = math.log(aug.erase_ratio[0]), math.log(aug.erase_ratio[1])
        ratio = torch.exp(log_lo + self._rand(b) * (log_hi - log_lo))
        eh = (area * ratio).sqrt().round().clamp(1, h)
        ew = (area / ratio).sqrt().round().clamp(1, w)
        top = (self._rand(b) * (h - eh + 1)).floor()
        left = (self._rand(b) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
                  & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)))
        apply = (self._rand(b) < aug.erasing).view(b, 1, 1)
        return x.masked_fill((inside & apply).unsqueeze(1), 0.0)

