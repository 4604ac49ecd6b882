"""From a model reference to an :class:`~menas_zoo.edge.Predictor`, the one way images are classified.

An ``.onnx`` file runs in ONNX Runtime through :mod:`menas_zoo.edge` alone (no torch import), with its
preprocessing read from the file's metadata. A zoo name, ``hf-hub:`` ref or artifact folder runs the
PyTorch network, with labels and mean/std from its config.json; preprocessing and the reading of the
output are the same code in both cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from menas_zoo.edge import EdgeError, ModelInfo, Predictor


def is_onnx_ref(ref: str) -> bool:
    return ref.lower().endswith((".onnx", ".ort")) or (Path(ref).is_file() and not ref.endswith(".json"))


def load_predictor(ref: str, *, providers: str | None = None, threads: int | None = None,
                   labels: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, offline: bool | None = None,
                   endpoint: str | None = None) -> Predictor:
    """A predictor for ``ref``; ``labels``/``mean``/``std`` override (or supply) the model's own.

    ``offline`` and ``endpoint`` apply to refs resolved through the hub (see :func:`menas_zoo.hub.resolve`).
    """
    if is_onnx_ref(ref):
        return Predictor.from_onnx(ref, providers=providers, threads=threads, labels=labels, mean=mean, std=std)
    if providers:
        raise EdgeError("--providers applies to ONNX files; export the model first (menas-zoo export) "
                        "and predict with its model.onnx")
    return _torch_predictor(ref, threads=threads, labels=labels, mean=mean, std=std, offline=offline,
                            endpoint=endpoint)


def _torch_predictor(ref: str, *, threads, labels, mean, std, offline, endpoint) -> Predictor:
    import torch  # only here: an .onnx file never needs it

    from menas_zoo.hub.resolve import load_source

    source = load_source(ref, offline=offline, endpoint=endpoint)
    genotype = source.model.genotype
    missing = [name for name, given, own in (("labels", labels, source.labels), ("mean", mean, source.mean),
                                             ("std", std, source.std)) if given is None and own is None]
    if missing:
        raise EdgeError(f"{ref} has no {', '.join(missing)} in its config.json: pass "
                        f"{' '.join('--' + m + ' ...' for m in missing)}")
    info = ModelInfo(labels=list(labels or source.labels), mean=[float(v) for v in (mean or source.mean)],
                     std=[float(v) for v in (std or source.std)], channels=genotype.in_chans,
                     resolution=genotype.resolution)
    for key in ("mean", "std"):
        if len(getattr(info, key)) != info.channels:
            raise EdgeError(f"{key} has {len(getattr(info, key))} values but {ref} reads "
                            f"{info.channels}-channel images")
    if len(info.labels) != genotype.num_classes:
        raise EdgeError(f"{len(info.labels)} labels given but {ref} has {genotype.num_classes} classes")
    model = source.model
    if threads:
        torch.set_num_threads(threads)

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).float().numpy()

    return Predictor(run, info)
