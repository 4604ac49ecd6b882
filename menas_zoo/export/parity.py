"""Parity: the ONNX file computes what the PyTorch network computes, on real images.

Both run the same normalized real test images in fp32, at a batch size different from the one the
export was traced with (a batch dimension baked in as a constant fails here, not in production).
Two numbers decide: the largest absolute difference of any logit, and the fraction of images whose
top-1 class agrees. Defaults are strict (1e-4, 100%); int8 comparisons use accuracy instead (quantize.py).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from menas_zoo.data import ImageDataset, load_dataset
from menas_zoo.edge import read_model_info
from menas_zoo.errors import MenasError, ParityError, first_line
from menas_zoo.export.defaults import DEFAULT_ATOL
from menas_zoo.export.runtime import ort_session
from menas_zoo.space.genotype import Genotype

DEFAULT_MIN_AGREEMENT = 1.0


@dataclass
class ParityResult:
    images: int
    batch_size: int
    max_abs_diff: float
    top1_agreement: float
    atol: float
    min_agreement: float
    normalization: str = "given"  # "onnx metadata": ORT read raw pixels normalized as the file itself says

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top1_agreement >= self.min_agreement

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        return (f"max |logit diff| {self.max_abs_diff:.2e} (tolerance {self.atol:.0e}), top-1 agreement "
                f"{self.top1_agreement:.2%} (required {self.min_agreement:.0%}) on {self.images} real images "
                f"at batch {self.batch_size}" + (", normalized from the file's metadata"
                                                 if self.normalization == "onnx metadata" else ""))


def real_images(dataset: ImageDataset, count: int, *, mean=None, std=None, offset: int = 0) -> torch.Tensor:
    """``count`` images of ``dataset`` as the model reads them: float (N, C, H, W), normalized with the
    model's own mean/std when given (an artifact's input spec), else the dataset's."""
    if count < 1:
        raise MenasError(f"need at least one image, got {count}")
    images = dataset.images[offset:offset + count].float().div(255)
    mean = torch.tensor(mean if mean is not None else dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(std if std is not None else dataset.std).view(1, -1, 1, 1)
    return ((images - mean) / std).contiguous()


def model_images(dataset: str, data_dir: str | Path | None, genotype: Genotype, count: int, *, mean=None, std=None,
                 split: str = "test") -> tuple[torch.Tensor, ImageDataset]:
    """Up to ``count`` images of ``split`` of the named dataset for a network of ``genotype``, normalized with
    the model's own ``mean``/``std`` when given (see :func:`real_images`), and the dataset they came from.
    A dataset whose images are not the shape the network reads is one error naming both shapes."""
    data = load_dataset(dataset, data_dir, split, in_chans=genotype.in_chans, resolution=genotype.resolution)
    if (data.in_chans, data.resolution) != (genotype.in_chans, genotype.resolution):
        raise MenasError(f"the model reads {genotype.in_chans}x{genotype.resolution}px images but {dataset} is "
                         f"{data.in_chans}x{data.resolution}px; pass --dataset/--data-dir with matching images")
    return real_images(data, min(count, len(data)), mean=mean, std=std), data


def check_parity(model: nn.Module, onnx_path: str | Path, images: torch.Tensor, *, batch_size: int = 16,
                 export_batch: int | None = None, atol: float = DEFAULT_ATOL,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT, threads: int = 1, strict: bool = True,
                 raw_images: torch.Tensor | None = None) -> ParityResult:
    """Compare logits of ``model`` and ``onnx_path`` on ``images``; raise :class:`ParityError` when
    ``strict`` and out of tolerance.

    With ``raw_images`` (the same images as [0, 1] pixels), ONNX Runtime is fed those normalized with the
    mean/std stored in the file's own metadata, the way a device running :mod:`menas_zoo.edge` would:
    parity then also proves the file alone carries the right preprocessing.
    """
    if export_batch is not None and batch_size == export_batch:
        raise MenasError(f"parity must run at a batch size other than the export's ({export_batch})")
    if images.ndim != 4:
        raise MenasError(f"parity images must be (N, C, H, W), got shape {tuple(images.shape)}")
    session = ort_session(onnx_path, threads=threads)
    input_name = session.get_inputs()[0].name
    onnx_inputs = images
    if raw_images is not None:
        if raw_images.shape != images.shape:
            raise MenasError(f"raw parity images {tuple(raw_images.shape)} do not match {tuple(images.shape)}")
        info = read_model_info(session, where=str(onnx_path))
        mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        std = torch.tensor(info.std).view(1, -1, 1, 1)
        onnx_inputs = ((raw_images.float() - mean) / std).contiguous()
    net = copy.deepcopy(model).float().cpu().eval()  # leave the caller's model (mode, device) alone
    max_diff, agree = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].float().contiguous()
            expected = net(x).numpy()
            try:
                (actual,) = session.run(None, {input_name: onnx_inputs[start:start + batch_size].float().numpy()})
            except Exception as exc:
                raise MenasError(f"{onnx_path} fails on a batch of {len(x)} images: "
                                 f"{first_line(exc)}") from None
            if actual.shape != expected.shape:
                raise ParityError(f"{onnx_path} returns shape {actual.shape}, PyTorch {expected.shape}")
            max_diff = max(max_diff, float(np.abs(actual - expected).max()))
            agree += int((actual.argmax(1) == expected.argmax(1)).sum())
    result = ParityResult(images=len(images), batch_size=batch_size, max_abs_diff=max_diff,
                          top1_agreement=agree / len(images), atol=atol, min_agreement=min_agreement,
                          normalization="onnx metadata" if raw_images is not None else "given")
    if strict and not result.passed:
        raise ParityError(f"parity failed for {onnx_path}: {result.summary()}")
    return result
