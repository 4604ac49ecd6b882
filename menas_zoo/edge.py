"""Classify images with an exported menas-zoo ONNX file, on onnxruntime, numpy and Pillow alone.

This module is the runtime half of menas-zoo and is meant to be copied onto a device: it imports
nothing else from menas-zoo (the one optional import below only lets the CLI print its errors as one
line), and never torch. ``python edge.py model.onnx image.png ...`` runs it standalone.

An export writes everything inference needs into the ONNX file's ``metadata_props`` (string keys,
JSON values), so the file alone is enough:

    menas_zoo_version   the package version that wrote the file (also marks the file as ours)
    labels              class names, in output order
    mean, std           per-channel normalization of pixels scaled to [0, 1]
    input_layout        "NCHW"
    input_channels      1 (grayscale) or 3 (RGB)
    input_resolution    height = width, in pixels
    genotype            the network's genotype (JSON)
    source_ref, source_revision, source_sha256   where the weights came from, and their sha256

Preprocessing follows the metadata: an image is converted to grayscale or RGB as the model needs,
resized to its resolution (unless ``resize=False``), scaled to [0, 1] and normalized.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError

try:  # inside menas-zoo, errors are MenasErrors so the CLI prints them as one line; vendored, plain exceptions
    from menas_zoo.errors import MenasError as _ErrorBase
    from menas_zoo.errors import first_line
except ImportError:  # pragma: no cover - only when this file is vendored on its own
    _ErrorBase = Exception

    def first_line(exc: BaseException) -> str:  # menas_zoo.errors.first_line, for this file alone
        text = str(exc).strip()
        return text.splitlines()[0].strip() if text else type(exc).__name__


class EdgeError(_ErrorBase):
    """A problem with the model file, the images or the options, said in one line."""


VERSION_KEY = "menas_zoo_version"
METADATA_KEYS = (VERSION_KEY, "labels", "mean", "std", "input_layout", "input_channels", "input_resolution",
                 "genotype", "source_ref", "source_revision", "source_sha256")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CPU = "CPUExecutionProvider"


# -- metadata --------------------------------------------------------------------------------------

def metadata_props(*, labels: Sequence[str], mean: Sequence[float], std: Sequence[float], channels: int,
                   resolution: int, genotype: dict | None = None, source: dict | None = None,
                   version: str = "unknown") -> dict[str, str]:
    """The ``metadata_props`` an export writes (all values are strings, as ONNX requires)."""
    source = source or {}
    props = {VERSION_KEY: version, "labels": json.dumps(list(labels)), "mean": json.dumps([float(m) for m in mean]),
             "std": json.dumps([float(s) for s in std]), "input_layout": "NCHW", "input_channels": str(channels),
             "input_resolution": str(resolution), "genotype": json.dumps(genotype) if genotype else "",
             "source_ref": str(source.get("ref") or ""), "source_revision": str(source.get("revision") or ""),
             "source_sha256": str(source.get("sha256") or "")}
    return props


@dataclass
class ModelInfo:
    """What preprocessing and reading the output need, from the file's metadata or the user."""

    labels: list[str]
    mean: list[float]
    std: list[float]
    channels: int
    resolution: int
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def has_our_metadata(self) -> bool:
        return VERSION_KEY in self.metadata


def read_model_info(session: ort.InferenceSession, *, labels: Sequence[str] | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    where: str = "the model") -> ModelInfo:
    """Model info from the file's metadata; ``labels``/``mean``/``std`` given here win over it.

    A file without our metadata works when the caller supplies what is missing; otherwise the error
    names exactly what to pass.
    """
    meta = dict(session.get_modelmeta().custom_metadata_map)
    inp = session.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise EdgeError(f"{where} takes a {len(shape)}-d input {shape}; expected images as (batch, C, H, W)")
    channels = _int_or_none(meta.get("input_channels")) or (shape[1] if isinstance(shape[1], int) else None)
    resolution = _int_or_none(meta.get("input_resolution")) or (shape[2] if isinstance(shape[2], int) else None)
    if channels is None or resolution is None:
        raise EdgeError(f"{where} has symbolic image dimensions {shape} and no input metadata")
    if channels not in (1, 3):
        raise EdgeError(f"{where} reads {channels}-channel images; only 1 (grayscale) and 3 (RGB) are supported")
    values = {"labels": labels, "mean": mean, "std": std}
    missing = []
    for key in values:
        if values[key] is None:
            if meta.get(key):
                try:
                    values[key] = json.loads(meta[key])
                except ValueError:
                    raise EdgeError(f"{where}: metadata {key!r} is not valid JSON") from None
            else:
                missing.append(key)
    if missing:
        raise EdgeError(f"{where} has no menas-zoo metadata for {', '.join(missing)}: pass "
                        f"{' '.join('--' + k + ' ...' for k in missing)} (or re-export it with menas-zoo export)")
    info = ModelInfo(labels=[str(x) for x in values["labels"]], mean=[float(x) for x in values["mean"]],
                     std=[float(x) for x in values["std"]], channels=channels, resolution=resolution, metadata=meta)
    for key in ("mean", "std"):
        if len(getattr(info, key)) != channels:
            raise EdgeError(f"{key} has {len(getattr(info, key))} values but {where} reads {channels}-channel images")
    if any(s <= 0 for s in info.std):
        raise EdgeError(f"std values must be positive, got {info.std}")
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and len(info.labels) != classes:
        raise EdgeError(f"{len(info.labels)} labels given but {where} has {classes} outputs")
    return info


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


# -- runtime ---------------------------------------------------------------------------------------

def resolve_providers(names: str | Sequence[str] | None) -> list[str]:
    """``"cuda,cpu"`` or full ORT names -> the providers to ask for, checked against this onnxruntime.

    Short names match case-insensitively without the ``ExecutionProvider`` suffix. The CPU provider is
    appended when missing, so operators another provider lacks still run.
    """
    if names is None or (isinstance(names, str) and not names.strip()):
        return [CPU]
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    available = ort.get_available_providers()
    by_short = {p.lower().removesuffix("executionprovider"): p for p in ort.get_all_providers()}
    chosen = []
    for name in wanted:
        full = name if name in by_short.values() else by_short.get(name.lower().removesuffix("executionprovider"))
        if full is None:
            raise EdgeError(f"unknown execution provider {name!r}; available here: {', '.join(available)}")
        if full not in available:
            raise EdgeError(f"execution provider {full} is not available in this onnxruntime build; available "
                            f"here: {', '.join(available)}")
        if full not in chosen:
            chosen.append(full)
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def open_session(path: str | Path, *, providers: str | Sequence[str] | None = None, threads: int | None = None,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An inference session for ``path``; a missing, truncated or malformed file is one :class:`EdgeError`."""
    path = Path(path)
    chosen = resolve_providers(providers)
    if not path.is_file():
        raise EdgeError(f"ONNX file not found: {path}")
    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings would land in the middle of printed tables
        if threads:
            options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        detail = first_line(exc)
        raise EdgeError(f"{path} does not load in ONNX Runtime: {detail}") from None


# -- images ----------------------------------------------------------------------------------------

def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files and folders -> image files (a folder's PNG/JPEG files, sorted); nothing found is an error."""
    if not paths:
        raise EdgeError("give at least one image file or folder")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EdgeError(f"{p} holds no PNG or JPEG images")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise EdgeError(f"no such image file or folder: {p}")
    return files


def load_image(path: str | Path, *, channels: int, resolution: int, resize: bool = True) -> np.ndarray:
    """One image as float32 (C, H, W) in [0, 1]: converted to grayscale or RGB, resized to ``resolution``."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later
            if img.format not in ("PNG", "JPEG"):
                raise EdgeError(f"{path} is a {img.format} image; use PNG or JPEG")
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                # 16-bit grayscale (PNG): Pillow's own conversion to 8 bits clips instead of scaling.
                img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = _on_white(img)
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (resolution, resolution):
                if not resize:
                    raise EdgeError(f"{path} is {img.size[0]}x{img.size[1]} px but the model reads "
                                    f"{resolution}x{resolution} (leave out --no-resize to resize it)")
                img = _center_square(img).resize((resolution, resolution), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except EdgeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = first_line(exc)
        raise EdgeError(f"{path} is not a readable PNG or JPEG image ({detail})") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _center_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


# -- prediction ------------------------------------------------------------------------------------

def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (label, probability), best first
    index: int  # class index of the best guess

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "top": [{"label": label, "probability": round(p, 6)} for label, p in self.top]}


class Predictor:
    """Preprocess, run in batches, read top-k. ``run`` maps a normalized float32 NCHW batch to logits,
    so the same preprocessing and output reading serve an ONNX session and any other backend."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], info: ModelInfo):
        self.run, self.info = run, info

    @classmethod
    def from_onnx(cls, path: str | Path, *, providers: str | Sequence[str] | None = None, threads: int | None = None,
                  labels: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> "Predictor":
        session = open_session(path, providers=providers, threads=threads)
        info = read_model_info(session, labels=labels, mean=mean, std=std, where=str(path))
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            try:
                return session.run(None, {name: x})[0]
            except Exception as exc:
                raise EdgeError(f"{path} fails on a batch of {len(x)} images: "
                                f"{first_line(exc)}") from None

        predictor = cls(run, info)
        predictor.session = session
        return predictor

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """[0, 1] pixels (N, C, H, W) -> the model's input."""
        mean = np.asarray(self.info.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.info.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((pixels.astype(np.float32) - mean) / std)

    def probabilities(self, pixels: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities of [0, 1] pixels (N, C, H, W), run ``batch_size`` at a time."""
        expected = (self.info.channels, self.info.resolution, self.info.resolution)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
            raise EdgeError(f"images must be (N, {', '.join(map(str, expected))}), got {tuple(pixels.shape)}")
        out = [softmax(self.run(self.normalize(pixels[i:i + batch_size]))) for i in range(0, len(pixels), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.info.labels)), dtype=np.float32)

    def top_k(self, probs: np.ndarray, names: Sequence[str], k: int = 3) -> list[Prediction]:
        k = max(1, min(k, probs.shape[1]))
        results = []
        for name, p in zip(names, probs):
            order = np.argsort(-p, kind="stable")[:k]
            results.append(Prediction(str(name), [(self.info.labels[i], float(p[i])) for i in order], int(order[0])))
        return results

    def predict_files(self, paths: Sequence[str | Path], *, top_k: int = 3, batch_size: int = 32, resize: bool = True,
                      progress: Callable[[Sequence[int]], Any] | None = None) -> list[Prediction]:
        """Top-k of every image in ``paths`` (files or folders), read and run ``batch_size`` at a time;
        ``progress`` wraps the sequence of batch starts (e.g. a progress bar)."""
        files = image_files(paths)
        starts = range(0, len(files), batch_size)
        results: list[Prediction] = []
        for start in (progress(starts) if progress else starts):
            chunk = files[start:start + batch_size]
            pixels = np.stack([load_image(f, channels=self.info.channels, resolution=self.info.resolution,
                                          resize=resize) for f in chunk])
            results += self.top_k(self.probabilities(pixels, batch_size=batch_size), [str(f) for f in chunk], top_k)
        return results


def parse_floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgeError(f"{what} must be comma-separated numbers, got {text!r}") from None


def parse_labels(text: str | None) -> list[str] | None:
    """``a,b,c`` or a text file with one label per line."""
    if text is None:
        return None
    path = Path(text)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [label.strip() for label in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone use on a device: ``python edge.py model.onnx IMAGE_OR_FOLDER... [--top-k 3] [--json]``."""
    parser = argparse.ArgumentParser(description="Classify PNG/JPEG images with a menas-zoo ONNX model.")
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--providers", default=None)
    parser.add_argument("--labels", default=None)
    parser.add_argument("--mean", default=None)
    parser.add_argument("--std", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.from_onnx(args.model, providers=args.providers, labels=parse_labels(args.labels),
                                        mean=parse_floats(args.mean, "--mean"), std=parse_floats(args.std, "--std"))
        predictions = predictor.predict_files(args.images, top_k=args.top_k, batch_size=args.batch_size)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([p.as_dict() for p in predictions], indent=2))
    else:
        for p in predictions:
            print(p.image + "  " + "  ".join(f"{label} {prob:.1%}" for label, prob in p.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
