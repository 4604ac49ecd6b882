"""The zoo artifact: one folder that holds one trained network, and is one Hub repo.

    config.json          schema version, genotype, parent genotype, prune summary, input spec, labels,
                         metrics (with the dataset, split and machine they were measured on), provenance
    model.safetensors    weights of the physically pruned network (never a pickle)
    masks.safetensors    bool channel masks of the ticket relative to its parent (optional)
    README.md            the model card, rendered at push time by ``menas_zoo.hub.card``

:func:`save_artifact` and :func:`load_artifact` are exact inverses. Loading trusts nothing: it checks the
schema version, parses the genotype, and compares every tensor's name and shape with the network the
genotype builds before ``load_state_dict(strict=True)``, so a wrong or corrupt file fails with one line
instead of a traceback deep inside torch. Pickled weights (``pytorch_model.bin``, ``*.pt``) are refused,
never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.slim import Masks, load_masks, mask_summary, slim_genotype
from menas_zoo.space.genotype import Genotype

#: Version of the config.json layout. Bump it (and teach ``load_artifact`` the old one) on any change.
SCHEMA_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
MASKS = "masks.safetensors"
CARD = "README.md"
#: Files a Hub repo of a menas-zoo model may hold; push and download use the same list.
ARTIFACT_FILES = (CONFIG, WEIGHTS, MASKS, CARD)
#: Names of pickled checkpoints we recognise only to refuse them with a useful message.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class Artifact:
    """A loaded artifact: the network (eval mode, CPU), its config, its ticket masks, its folder."""

    model: MobileNetMT
    config: dict[str, Any]
    masks: Masks | None
    path: Path

    @property
    def genotype(self) -> Genotype:
        return self.model.genotype

    @property
    def parent_genotype(self) -> Genotype | None:
        parent = self.config.get("parent_genotype")
        return Genotype.from_dict(parent) if parent is not None else None


# -- save ------------------------------------------------------------------------------------------

def package_version() -> str:
    try:
        return metadata.version("menas-zoo")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_config(model: MobileNetMT, *, parent_genotype: Genotype | None = None, masks: Masks | None = None,
                 metrics: dict[str, Any] | None = None, input_spec: dict[str, Any] | None = None,
                 labels: list[str] | None = None, provenance: dict[str, Any] | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """The config.json document of ``model``. Params and MACs are always counted here, from the genotype."""
    genotype = model.genotype
    if masks:
        if parent_genotype is None:
            raise MenasError("masks are relative to a parent network: pass parent_genotype with them")
        if slim_genotype(parent_genotype, masks) != genotype:
            raise MenasError("masks and parent genotype do not give this model's genotype "
                             "(expected slim_genotype(parent, masks) == model.genotype)")
    spec = {"in_chans": genotype.in_chans, "resolution": genotype.resolution, "mean": None, "std": None}
    spec.update(input_spec or {})
    if (spec["in_chans"], spec["resolution"]) != (genotype.in_chans, genotype.resolution):
        raise MenasError(f"input spec {spec['in_chans']}x{spec['resolution']}px does not match the genotype's "
                         f"{genotype.in_chans}x{genotype.resolution}px")
    if labels is not None and len(labels) != genotype.num_classes:
        raise MenasError(f"{len(labels)} labels given for a {genotype.num_classes}-class network")
    cost = genotype_cost(genotype)
    return {
        "schema_version": SCHEMA_VERSION,
        "library_name": "menas-zoo",
        "description": description,
        "genotype": genotype.to_dict(),
        "parent_genotype": parent_genotype.to_dict() if parent_genotype is not None else None,
        "prune_summary": mask_summary(masks) if masks else None,
        "input_spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()},
        "labels": list(labels) if labels is not None else None,
        "metrics": {**{k: v for k, v in (metrics or {}).items() if v is not None},
                    "params": cost.params, "macs": cost.macs},
        "provenance": {"package_version": package_version(), **(provenance or {})},
    }


def save_artifact(directory: str | Path, model: MobileNetMT, *, parent_genotype: Genotype | None = None,
                  masks: Masks | None = None, metrics: dict[str, Any] | None = None,
                  input_spec: dict[str, Any] | None = None, labels: list[str] | None = None,
                  provenance: dict[str, Any] | None = None, description: str | None = None) -> Path:
    """Write ``model`` as an artifact in ``directory`` and return its path.

    ``metrics`` holds measured numbers with their context, e.g. ``{"accuracy": {"value": 0.91,
    "dataset": "fashion-mnist", "split": "test"}, "latency": {"ms": 0.4, "runtime": "onnxruntime",
    "machine": "..."}}``; params and MACs are added from the genotype. Files are written into a
    temporary folder first: a new artifact appears by one rename; an existing folder (a training run)
    gets its files swapped in with config.json removed first and written last, so at no moment does it
    pair a config with weights it does not describe.
    """
    directory = Path(directory)
    config = build_config(model, parent_genotype=parent_genotype, masks=masks, metrics=metrics,
                          input_spec=input_spec, labels=labels, provenance=provenance, description=description)
    directory.parent.mkdir(parents=True, exist_ok=True)
    fresh = not directory.exists() or not any(directory.iterdir())
    if directory.exists() and not directory.is_dir():
        raise MenasError(f"{directory} exists and is not a folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp",
                                    dir=directory.parent if fresh else directory))
    try:
        # mkdtemp makes a private (0700) folder; give the artifact the permissions a normal folder would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": "pt"})
        if masks:
            save_file({k: v.to(torch.bool).cpu().contiguous() for k, v in masks.items()}, str(staging / MASKS))
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for name in os.listdir(staging):
            os.chmod(staging / name, 0o666 & ~umask)
            with open(staging / name, "rb") as fh:
                os.fsync(fh.fileno())
        if fresh:
            if directory.exists():
                directory.rmdir()  # empty, checked above
            os.replace(staging, directory)
        else:
            (directory / CONFIG).unlink(missing_ok=True)
            if not masks:
                (directory / MASKS).unlink(missing_ok=True)  # stale masks of an earlier save
            for name in (WEIGHTS, MASKS, CONFIG):  # config last: it is what makes the folder an artifact
                if (staging / name).exists():
                    os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


# -- load ------------------------------------------------------------------------------------------

def is_artifact(directory: str | Path) -> bool:
    """True for a folder with a menas-zoo config.json (cheap: does not read the weights)."""
    config = Path(directory) / CONFIG
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "schema_version" in data and "genotype" in data


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and check config.json of an artifact folder (schema version, genotype present)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MenasError(f"{directory} is not a folder")
    config_path = directory / CONFIG
    if not config_path.is_file():
        _refuse_pickles(directory)
        raise MenasError(f"{directory} is not a menas-zoo artifact (no {CONFIG}); "
                         "make one with 'menas-zoo train --out DIR' or menas_zoo.artifact.save_artifact")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MenasError(f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "genotype" not in config:
        raise MenasError(f"{config_path} is not a menas-zoo config (no 'genotype')")
    version = config.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MenasError(f"{config_path} has artifact schema version {version!r}, but this menas-zoo reads "
                         f"version {SCHEMA_VERSION}; upgrade menas-zoo or re-save the artifact")
    return config


def load_artifact(directory: str | Path) -> Artifact:
    """Load an artifact folder; every problem is a one-line :class:`MenasError`."""
    directory = Path(directory)
    config = read_config(directory)
    try:
        genotype = Genotype.from_dict(config["genotype"])
    except MenasError as exc:
        raise MenasError(f"{directory / CONFIG}: {exc}") from None
    weights_path = directory / WEIGHTS
    if not weights_path.is_file():
        _refuse_pickles(directory)
        raise MenasError(f"{directory} has no {WEIGHTS}; the artifact is incomplete")
    state = _read_safetensors(weights_path)
    model = build_model(genotype)
    check_state_dict(state, model, where=str(weights_path))
    model.load_state_dict(state, strict=True)
    masks = None
    if (directory / MASKS).is_file():
        masks = load_masks(directory / MASKS)
        parent = config.get("parent_genotype")
        try:
            parent_genotype = Genotype.from_dict(parent) if parent is not None else None
        except MenasError as exc:
            raise MenasError(f"{directory / CONFIG}: parent genotype: {exc}") from None
        if parent_genotype is None or slim_genotype(parent_genotype, masks) != genotype:
            raise MenasError(f"{directory / MASKS} does not match the genotype and parent genotype in {CONFIG}")
    return Artifact(model=model.eval(), config=config, masks=masks, path=directory)


def check_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, where: str = "weights") -> None:
    """Fail with one line unless ``state`` has exactly the keys and shapes of ``model``'s state dict."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise MenasError(f"{where} does not match the genotype: {'; '.join(problems)}")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file: what the registry pins and the Hub uses as an LFS file's id."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MenasError(f"{path} is not a readable safetensors file ({detail}); re-download or re-save it") from None


def _refuse_pickles(directory: Path) -> None:
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise MenasError(f"{directory} holds only pickled weights ({', '.join(pickles)}); menas-zoo never "
                         "unpickles files (they can run code): convert them to model.safetensors with a config.json")
