"""The zoo artifact: one folder that holds one trained network, and is one Hub repo.

    config.json          schema version, genotype, parent genotype, prune summary, input spec, labels,
                         metrics (with the dataset, split and machine they were measured on), provenance
    model.safetensors    weights of the physically pruned network (never a pickle)
    masks.safetensors    bool channel masks of the ticket relative to its parent (optional)
    README.md            the model card, rendered at push time by ``menas_zoo.hub.card``

:func:`save_artifact` and :func:`load_artifact` are exact inverses. Loading trusts nothing: it reads
config.json size-capped, checks the schema version and field types, parses the genotype (within
bounds), and compares every tensor's name, dtype and shape in the weights file's header with the network
built on the ``meta`` device, before a single tensor is allocated; then NaN and infinities are refused
and masks are checked against the parent genotype. A wrong, corrupt or hostile file fails with one line
instead of a traceback or gigabytes of memory. Pickled weights (``pytorch_model.bin``, ``*.pt``) are
refused, never opened.

A search keeps each of its individuals in this layout too (``tickets/trial-NNNNNN/`` of its run folder,
see ``menas_zoo.search.state``), written by :func:`write_artifact` like every artifact, so any of them
loads, exports or pushes as a zoo model while its weights are kept.
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError, NonFiniteWeightsError, first_line
from menas_zoo.io import read_json, remove_stale_temporaries, temporary_prefix, umask_mode, write_errors
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
#: Deployment assets a published repo carries beside the artifact (what ``menas-zoo export`` writes):
#: the fp32 ONNX file, and the int8 one where it keeps the zoo's accuracy. Loading never needs them.
ONNX_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
DEPLOYMENT_FILES = (ONNX_FILE, INT8_FILE)
#: safetensors' names of the dtypes a network's state dict holds (float32 weights, int64 BN counters).
_DTYPE_NAMES = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL", torch.float64: "F64",
                torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8", torch.uint8: "U8"}
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


def build_config(genotype: Genotype, *, parent_genotype: Genotype | None = None, masks: Masks | None = None,
                 metrics: dict[str, Any] | None = None, input_spec: dict[str, Any] | None = None,
                 labels: list[str] | None = None, provenance: dict[str, Any] | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """The config.json document of a network of ``genotype``. Params and MACs are always counted here."""
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
    "machine": "..."}}``; params and MACs are added from the genotype. See :func:`write_artifact` for
    how the files reach the folder.
    """
    config = build_config(model.genotype, parent_genotype=parent_genotype, masks=masks, metrics=metrics,
                          input_spec=input_spec, labels=labels, provenance=provenance, description=description)
    return write_artifact(directory, config, model.state_dict(), masks)


def write_artifact(directory: str | Path, config: dict[str, Any], weights: dict[str, torch.Tensor] | None,
                   masks: Masks | None = None) -> Path:
    """Write an artifact folder from its config (:func:`build_config`), weights and masks: the one writer.

    ``weights=None`` writes the description of a network without its weights (config.json and masks), what
    a search keeps of an individual it has no weights for; :func:`load_artifact` calls such a folder
    incomplete. Files are written into a temporary folder first, with the permissions the umask gives: a
    new artifact appears by one rename; an existing folder (a training run) gets its files swapped in with
    config.json removed first and written last, so at no moment does it pair a config with weights it
    does not describe. Files this save does not write (stale masks or weights) are removed.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    fresh = not directory.exists() or not any(directory.iterdir())
    if directory.exists() and not directory.is_dir():
        raise MenasError(f"{directory} exists and is not a folder")
    with write_errors(directory):  # a full disk or a read-only folder is one line
        for folder in (directory.parent, directory):  # what a save killed half-way left behind
            remove_stale_temporaries(folder, directory.name)
        staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(directory.name), suffix=".tmp",
                                        dir=directory.parent if fresh else directory))
        try:
            os.chmod(staging, umask_mode(folder=True))
            if weights is not None:
                state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
                save_file(state, str(staging / WEIGHTS), metadata={"format": "pt"})
            if masks:
                save_file({k: v.to(torch.bool).cpu().contiguous() for k, v in masks.items()}, str(staging / MASKS))
            (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
            for name in os.listdir(staging):
                os.chmod(staging / name, umask_mode())
                with open(staging / name, "rb") as fh:
                    os.fsync(fh.fileno())
            if fresh:
                if directory.exists():
                    directory.rmdir()  # empty, checked above
                os.replace(staging, directory)
            else:
                (directory / CONFIG).unlink(missing_ok=True)
                for name in (WEIGHTS, MASKS):  # stale files of an earlier save
                    if not (staging / name).exists():
                        (directory / name).unlink(missing_ok=True)
                for name in (WEIGHTS, MASKS, CONFIG):  # config last: it is what makes the folder an artifact
                    if (staging / name).exists():
                        os.replace(staging / name, directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


# -- load ------------------------------------------------------------------------------------------

def is_artifact(directory: str | Path) -> bool:
    """True for a folder with a menas-zoo config.json (cheap: does not read the weights)."""
    try:
        data = read_json(Path(directory) / CONFIG, what=CONFIG)
    except MenasError:
        return False
    return isinstance(data, dict) and "schema_version" in data and "genotype" in data


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and check config.json of an artifact folder (size, schema version, genotype, field types)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MenasError(f"{directory} is not a folder")
    config_path = directory / CONFIG
    if not config_path.is_file():
        _refuse_pickles(directory)
        raise MenasError(f"{directory} is not a menas-zoo artifact (no {CONFIG}); "
                         "make one with 'menas-zoo train --out DIR' or menas_zoo.artifact.save_artifact")
    config = read_json(config_path, what=f"menas-zoo {CONFIG}")
    if not isinstance(config, dict) or "genotype" not in config:
        raise MenasError(f"{config_path} is not a menas-zoo config (no 'genotype')")
    version = config.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MenasError(f"{config_path} has artifact schema version {version!r}, but this menas-zoo reads "
                         f"version {SCHEMA_VERSION}; upgrade menas-zoo or re-save the artifact")
    check_config_fields(config, config_path)
    return config


def check_config_fields(config: dict[str, Any], where: str | Path) -> None:
    """Fail with one line unless the fields every reader relies on have the types :func:`build_config` writes."""
    def fail(field: str, expected: str) -> None:
        raise MenasError(f"{where}: {field} must be {expected}")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    metrics = config.get("metrics")
    if not isinstance(metrics, dict):
        fail("'metrics'", "an object with params and macs")
    for key in ("params", "macs"):
        if not isinstance(metrics.get(key), int) or isinstance(metrics.get(key), bool):
            fail(f"metrics.{key}", "an integer")
    accuracy, latency = metrics.get("accuracy"), metrics.get("latency")
    if accuracy is not None and not (isinstance(accuracy, dict) and number(accuracy.get("value"))
                                     and isinstance(accuracy.get("split"), str)):
        fail("metrics.accuracy", "an object with a numeric 'value' and a 'split'")
    if latency is not None and not (isinstance(latency, dict) and number(latency.get("ms"))):
        fail("metrics.latency", "an object with a numeric 'ms'")
    spec = config.get("input_spec")
    if spec is not None:
        if not isinstance(spec, dict):
            fail("'input_spec'", "an object (in_chans, resolution, mean, std)")
        for key in ("mean", "std"):
            value = spec.get(key)
            if value is not None and not (isinstance(value, list) and value and all(number(v) for v in value)):
                fail(f"input_spec.{key}", "a list of numbers or null")
    labels = config.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(v, str) for v in labels)):
        fail("'labels'", "a list of strings or null")


def load_artifact(directory: str | Path) -> Artifact:
    """Load an artifact folder; every problem is a one-line :class:`MenasError`."""
    directory = Path(directory)
    if directory.is_dir() and not (directory / WEIGHTS).is_file():
        _refuse_pickles(directory)  # the most useful thing to say about such a folder, whatever its config
    config = read_config(directory)
    try:
        genotype = Genotype.from_dict(config["genotype"])
    except MenasError as exc:
        raise MenasError(f"{directory / CONFIG}: {exc}") from None
    weights_path = directory / WEIGHTS
    if not weights_path.is_file():
        _refuse_pickles(directory)
        raise MenasError(f"{directory} has no {WEIGHTS}; {_why_no_weights(directory, config)}")
    model = load_weights(weights_path, genotype)
    masks = None
    if (directory / MASKS).is_file():
        parent = config.get("parent_genotype")
        try:
            parent_genotype = Genotype.from_dict(parent) if parent is not None else None
        except MenasError as exc:
            raise MenasError(f"{directory / CONFIG}: parent genotype: {exc}") from None
        if parent_genotype is None:
            raise MenasError(f"{directory / MASKS} needs a parent_genotype in {CONFIG} (masks are relative to it)")
        masks = load_masks(directory / MASKS, parent_genotype)
        if slim_genotype(parent_genotype, masks) != genotype:
            raise MenasError(f"{directory / MASKS} does not match the genotype and parent genotype in {CONFIG}")
    return Artifact(model=model.eval(), config=config, masks=masks, path=directory)


def load_weights(path: str | Path, genotype: Genotype) -> MobileNetMT:
    """The network of ``genotype`` with the weights in ``path``, checked before a tensor is allocated.

    The network is first built on the ``meta`` device (no memory) and compared, name by name, with the
    file's header (dtype and shape, no data read); only a file that fits exactly is read, checked for NaN
    and infinities, and assigned to the network, so a config that asks for a huge network with a small
    file costs nothing.
    """
    path = Path(path)
    with torch.device("meta"):
        skeleton = build_model(genotype)
    expected = {k: (_DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in skeleton.state_dict().items()}
    compare_tensor_specs(_read_header(path), expected, where=str(path))
    state = _read_safetensors(path)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NonFiniteWeightsError(f"{path}: {name} holds NaN or infinite values; the weights are damaged")
    skeleton.load_state_dict(state, strict=True, assign=True)
    return skeleton


def check_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, where: str = "weights") -> None:
    """Fail with one line unless ``state`` has exactly the keys, dtypes and shapes of ``model``'s state dict."""
    def specs(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {k: (_DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in tensors.items()}

    compare_tensor_specs(specs(state), specs(model.state_dict()), where)


def compare_tensor_specs(found: dict[str, tuple[str, tuple[int, ...]]],
                         expected: dict[str, tuple[str, tuple[int, ...]]], where: str) -> None:
    """Compare ``{name: (dtype, shape)}`` maps; a difference is one line naming the first few culprits."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {found[k][1]} != {v[1]}" for k, v in expected.items() if k in found and found[k][1] != v[1]]
    dtypes = [f"{k} {found[k][0]} != {v[0]}" for k, v in expected.items()
              if k in found and found[k][1] == v[1] and found[k][0] != v[0]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                         ("wrong dtype", dtypes)):
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


def _read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors header, without reading any tensor data."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: (fh.get_slice(k).get_dtype(), tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = first_line(exc)
        raise MenasError(f"{path} is not a readable safetensors file ({detail}); re-download or re-save it") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = first_line(exc)
        raise MenasError(f"{path} is not a readable safetensors file ({detail}); re-download or re-save it") from None


def _why_no_weights(directory: Path, config: dict[str, Any]) -> str:
    """Why a folder describes a network without its weights. A search's individual says so in its
    provenance: the search drops the weights of those that do not survive, and an individual over the
    search's limits (no validation accuracy) was never trained to the end, so it never had any."""
    search = config.get("provenance") or {}
    run, trial = search.get("search_run"), search.get("trial")
    if not (isinstance(run, str) and isinstance(trial, int) and not isinstance(trial, bool)):
        return "the artifact is incomplete"
    retrain = f"retrain it from its genotype with 'menas-zoo train {directory} --out DIR'"
    if search.get("diverged"):
        return f"trial {trial} of search {run} diverged (its weights were not finite), so none were kept; {retrain}"
    if "accuracy" not in config["metrics"]:
        return f"trial {trial} of search {run} was over the search's limits and never trained to the end; {retrain}"
    return (f"search {run} dropped the weights of trial {trial}, which did not survive (a search keeps only its "
            f"survivors'); {retrain}")


def _refuse_pickles(directory: Path) -> None:
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise MenasError(f"{directory} holds only pickled weights ({', '.join(pickles)}); menas-zoo never "
                         "unpickles files (they can run code): convert them to model.safetensors with a config.json")
