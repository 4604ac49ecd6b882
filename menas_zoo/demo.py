"""The picture a person looks at first: sample test images with the model's guesses, mistakes in red.

Images are drawn at random (seeded) from a dataset split, classified through the same
:class:`~menas_zoo.edge.Predictor` as ``menas-zoo predict``, and laid out as a PNG grid with matplotlib:
each cell shows the predicted label with its probability and the true label; a wrong guess gets a red
title and frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from menas_zoo.data import ImageDataset
from menas_zoo.edge import Predictor
from menas_zoo.errors import MenasError
from menas_zoo.io import atomic_path


@dataclass
class DemoResult:
    path: Path
    images: int
    correct: int
    mistakes: list[dict]  # {"index", "true", "predicted", "probability"}

    @property
    def accuracy(self) -> float:
        return self.correct / self.images

    def as_dict(self) -> dict:
        return {"path": str(self.path), "images": self.images, "correct": self.correct,
                "accuracy": round(self.accuracy, 4), "mistakes": self.mistakes}


def demo_grid(predictor: Predictor, data: ImageDataset, out: str | Path, *, count: int = 16, seed: int = 0,
              columns: int | None = None) -> DemoResult:
    """Classify ``count`` random images of ``data`` and write the grid to ``out`` (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise MenasError(f"--out must be a .png file, got {out}")
    if count < 1:
        raise MenasError(f"need at least one image, got {count}")
    info = predictor.info
    if (data.in_chans, data.resolution) != (info.channels, info.resolution):
        raise MenasError(f"the model reads {info.channels}x{info.resolution}px images but {data.name} is "
                         f"{data.in_chans}x{data.resolution}px")
    count = min(count, len(data))
    index = np.sort(np.random.default_rng(seed).choice(len(data), size=count, replace=False))
    pixels = data.images[index].numpy().astype(np.float32) / 255.0
    probs = predictor.probabilities(pixels)
    predicted, truth = probs.argmax(1), data.labels[index].numpy()

    columns = columns or min(count, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.2), squeeze=False)
    mistakes = []
    for cell, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if cell >= count:
            ax.axis("off")
            continue
        image = pixels[cell]
        ax.imshow(image[0] if info.channels == 1 else image.transpose(1, 2, 0),
                  cmap="gray" if info.channels == 1 else None,
                  vmin=0, vmax=1)
        p, t = int(predicted[cell]), int(truth[cell])
        wrong = p != t
        color = "tab:red" if wrong else "tab:green"
        ax.set_title(f"{info.labels[p]} {probs[cell, p]:.0%}\ntrue: {data.classes[t]}", fontsize=8, color=color)
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(3 if wrong else 1)
        if wrong:
            mistakes.append({"index": int(index[cell]), "true": data.classes[t], "predicted": info.labels[p],
                             "probability": round(float(probs[cell, p]), 4)})
    correct = count - len(mistakes)
    fig.suptitle(f"{correct}/{count} correct on {data.name} test images (mistakes in red)", fontsize=10)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    except OSError as exc:
        raise MenasError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return DemoResult(out, count, correct, mistakes)


def demo_ref(ref: str, out: str | Path, *, count: int = 16, seed: int = 0, dataset: str = "fashion-mnist",
             data_dir: str | Path | None = None, providers: str | None = None, offline: bool | None = None,
             endpoint: str | None = None) -> DemoResult:
    """``menas-zoo demo``: the grid of ``count`` test images of ``dataset`` classified by ``ref`` (anything
    :func:`menas_zoo.predict.load_predictor` takes), the images read as the model reads them."""
    from menas_zoo.data import load_dataset
    from menas_zoo.predict import is_onnx_ref, load_predictor

    if Path(out).suffix.lower() != ".png":
        raise MenasError(f"--out must be a .png file, got {out}")
    predictor = load_predictor(ref, providers=providers if is_onnx_ref(ref) else None, offline=offline,
                               endpoint=endpoint)
    info = predictor.info  # an image folder is read as the model reads images
    data = load_dataset(dataset, data_dir, "test", in_chans=info.channels, resolution=info.resolution)
    return demo_grid(predictor, data, out, count=count, seed=seed)
