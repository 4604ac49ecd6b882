"""From a ref to a loaded network: the one path every ``load``, ``info``, ``export``, ``bench`` and ``create_model``
goes through.

A ref is a local artifact folder, a registered name (``mt-test``) or ``hf-hub:ORG/NAME[@REVISION]``;
:func:`resolve_model` also takes a genotype with a weights file (or fresh weights), as ``export`` and
``bench`` do; :func:`resolve_network` takes a genotype alone as an untrained network, as ``info`` does.
Sources are tried in this order, first hit wins, and the network is touched only by the last:

1. a local folder;
2. the Hugging Face cache at the pinned revision (``snapshot_download(local_files_only=True)``);
3. the copy bundled in the package (registered names only), checked against the pinned sha256s;
4. the Hub: the revision's commit id is asked for and checked (40 hex characters) first, then
   ``snapshot_download`` fetches that commit; every request is time-bounded (``menas_zoo.hub.http``),
   so a silent endpoint fails in about ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds with one line.

``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME``/``HF_HUB_CACHE`` are read here at call time, because
huggingface_hub reads them once at import; ``HF_TOKEN`` is read by huggingface_hub at call time.
Offline, a ref the first three sources miss fails at once with what to do. Only safetensors and JSON
are ever downloaded, so nothing downloaded is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from menas_zoo.artifact import (ARTIFACT_FILES, CONFIG, PICKLE_SUFFIXES, WEIGHTS, Artifact, file_sha256, is_artifact,
                               load_artifact, load_weights, read_config)
from menas_zoo.errors import MenasError
from menas_zoo.hub.http import bounded_session, network_error, resolve_commit
from menas_zoo.hub.registry import ZooEntry, get_entry, list_models, unknown_model
from menas_zoo.io import write_text_atomic
from menas_zoo.nets import MobileNetMT, adapt_model, build_model
from menas_zoo.space.genotype import Genotype
from menas_zoo.space.references import looks_like_genotype, resolve_genotype

HF_HUB_PREFIX = "hf-hub:"
OFFLINE_ADVICE = "check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use cached and bundled models only"
_REPO_REF = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?")


@dataclass(frozen=True)
class Resolved:
    """Where a ref was found: a folder with config.json and model.safetensors, and how it got there."""

    path: Path
    source: str  # "local" | "cache" | "bundled" | "hub"
    repo_id: str | None = None
    revision: str | None = None
    name: str | None = None  # the registered name, if any


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``hf-hub:org/name@rev`` -> ``("org/name", "rev")``; anything else is a one-line error."""
    match = _REPO_REF.fullmatch(ref[len(HF_HUB_PREFIX):])
    if not match or ".." in ref or "--" in match["repo"]:
        raise MenasError(f"malformed Hub ref {ref!r}: expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return match["repo"], match["rev"]


def offline_mode(offline: bool | None = None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or constants.HF_HUB_OFFLINE


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The HF hub cache, with the same precedence as huggingface_hub but read now, not at import."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def resolve(ref: str, *, offline: bool | None = None, endpoint: str | None = None, token: str | None = None,
            cache: str | Path | None = None) -> Resolved:
    """Find the artifact folder of ``ref`` (see the module doc for the order)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return Resolved(path=path, source="local")
    entry: ZooEntry | None = None
    if ref.startswith(HF_HUB_PREFIX):
        repo_id, revision = parse_hub_ref(ref)
    elif os.sep in ref or ref.startswith("."):
        raise MenasError(f"no such folder: {ref} (for a Hub repo write hf-hub:ORG/NAME)")
    else:
        entry = get_entry(ref)  # an unknown name fails here, naming the closest registered ones
        repo_id, revision = entry.repo_id, entry.revision
    name = entry.name if entry else None
    cache = cache_dir(cache)

    cached = _from_cache(repo_id, revision, cache)
    if cached is not None:
        if entry is not None:
            verify_files(cached, entry.files, where=f"cached copy of {entry.name}")
        return Resolved(path=cached, source="cache", repo_id=repo_id, revision=revision, name=name)

    if entry is not None and entry.bundled:
        bundled = Path(str(resources.files("menas_zoo.hub").joinpath("bundled", entry.name)))
        verify_files(bundled, entry.files, where=f"bundled copy of {entry.name}")
        return Resolved(path=bundled, source="bundled", repo_id=repo_id, revision=revision, name=name)

    if offline_mode(offline):
        raise MenasError(f"{ref} is not in the Hugging Face cache ({cache}) and the Hub is off (HF_HUB_OFFLINE or "
                         "--offline): load it once online, copy its folder here and pass the folder, or unset "
                         "HF_HUB_OFFLINE")
    downloaded = _from_hub(ref, repo_id, revision, cache, hub_endpoint(endpoint), token)
    if entry is not None:
        verify_files(downloaded, entry.files, where=f"download of {entry.name}")
    return Resolved(path=downloaded, source="hub", repo_id=repo_id, revision=revision, name=name)


def verify_files(directory: Path, expected: dict[str, str], where: str) -> None:
    """Fail unless every pinned file exists in ``directory`` with its pinned sha256."""
    for file_name, sha256 in expected.items():
        path = directory / file_name
        if not path.is_file():
            raise MenasError(f"{where}: {file_name} is missing from {directory}")
        actual = file_sha256(path)
        if actual != sha256:
            raise MenasError(f"{where}: sha256 mismatch for {file_name} (expected {sha256[:12]}..., got "
                             f"{actual[:12]}...); the file is damaged or was replaced: delete it and load again")


def _from_cache(repo_id: str, revision: str | None, cache: Path) -> Path | None:
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True,
                                        allow_patterns=list(ARTIFACT_FILES)))
    except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError, ValueError):
        return None
    # A snapshot folder can exist with only some files (an interrupted or partial download).
    return folder if (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file() else None


def _from_hub(ref: str, repo_id: str, revision: str | None, cache: Path, endpoint: str, token: str | None) -> Path:
    where = f"{repo_id}@{revision or 'main'} on {endpoint}"
    connect, _ = bounded_session()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        # Pin the download to a commit id we checked: huggingface_hub builds cache paths from it.
        commit = resolve_commit(api, repo_id, revision)
        folder = Path(snapshot_download(repo_id, revision=commit, cache_dir=cache, endpoint=endpoint, token=token,
                                        allow_patterns=list(ARTIFACT_FILES), etag_timeout=connect))
        if revision != commit:  # remember branch/tag -> commit, so the cache answers offline next time
            write_text_atomic(cache / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" /
                              (revision or constants.DEFAULT_REVISION), commit)
        if not (folder / WEIGHTS).is_file():
            files = api.list_repo_files(repo_id, revision=commit)
            pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
            if pickles:
                raise MenasError(f"{where} has only pickled weights ({', '.join(pickles)}); menas-zoo never "
                                 "unpickles downloads (they can run code). Ask for a model.safetensors")
            raise MenasError(f"{where} is not a menas-zoo model repo (no {WEIGHTS})")
        return folder
    except MenasError:
        raise
    except RevisionNotFoundError:
        raise MenasError(f"revision not found: {where}") from None
    except GatedRepoError:
        raise MenasError(f"{where} is gated: accept its terms on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise MenasError(f"{where} not found (a private repo needs HF_TOKEN or --token)") from None
    except LocalEntryNotFoundError as exc:
        # snapshot_download's way of saying "the Hub failed and nothing is cached": the cause says how
        cause = exc.__cause__ or exc.__context__
        error = network_error(cause, endpoint, f"fetching {ref}", OFFLINE_ADVICE) if cause is not None else None
        raise (error or MenasError(f"cannot reach the Hub at {endpoint} to fetch {ref}: {OFFLINE_ADVICE}")) from None
    except Exception as exc:  # noqa: BLE001 - transport errors are the HTTP backend's own classes
        error = network_error(exc, endpoint, f"fetching {ref}", OFFLINE_ADVICE)
        if error is not None:
            raise error from None
        if isinstance(exc, OSError):
            raise MenasError(f"cannot fetch {ref} from {endpoint}: {exc}") from None
        raise


def load(ref: str, **kwargs) -> tuple[Artifact, Resolved]:
    """Resolve ``ref`` and load its artifact (checked against its genotype); kwargs go to :func:`resolve`."""
    resolved = resolve(ref, **kwargs)
    return load_artifact(resolved.path), resolved


@dataclass
class ModelSource:
    """A network in eval mode with what came with it: its own input normalization, labels and provenance."""

    model: MobileNetMT
    ref: str
    kind: str  # "artifact" | "hub" | "genotype"
    mean: list[float] | None  # the model's own input normalization, when it carries one
    std: list[float] | None
    labels: list[str] | None = None
    revision: str | None = None  # the Hub commit the weights came from
    weights_sha256: str | None = None

    @classmethod
    def from_artifact(cls, artifact: Artifact, ref: str, kind: str, revision: str | None = None) -> ModelSource:
        """The artifact's network with the mean/std of its input spec and its labels, as config.json says."""
        spec = artifact.config.get("input_spec") or {}
        return cls(artifact.model.eval(), ref, kind, spec.get("mean"), spec.get("std"),
                   labels=artifact.config.get("labels"), revision=revision,
                   weights_sha256=file_sha256(artifact.path / WEIGHTS))


def resolve_model(ref: str, *, weights: str | Path | None = None, random_init: bool = False,
                  offline: bool | None = None, endpoint: str | None = None) -> ModelSource:
    """REF -> network, through the one loading path of each kind: an artifact folder, a zoo name or
    ``hf-hub:`` ref (:func:`load`), or a genotype with ``weights`` (a safetensors file) or ``random_init``."""
    if weights is not None or random_init:
        if weights is not None and random_init:
            raise MenasError("give either --weights or --random-init, not both")
        genotype = resolve_genotype(ref)
        model = (load_weights(weights, genotype) if weights is not None else build_model(genotype)).eval()
        return ModelSource(model, ref, "genotype", None, None,
                           weights_sha256=file_sha256(weights) if weights is not None else None)
    if Path(ref).is_dir() and is_artifact(ref):
        return ModelSource.from_artifact(load_artifact(ref), ref, "artifact")
    try:
        return load_source(ref, offline=offline, endpoint=endpoint)  # zoo names and hf-hub: refs
    except MenasError:
        if not looks_like_genotype(ref):
            raise  # the real cause: an unknown name, an unreachable Hub, a missing repo, a damaged file, ...
        resolve_genotype(ref)  # a malformed genotype fails here, saying what is wrong with it
        raise MenasError(f"{ref!r} is a genotype, not a trained model: add --weights model.safetensors, or "
                         "--random-init to time an untrained network") from None


def resolve_network(ref: str, *, in_chans: int | None = None, resolution: int | None = None,
                    num_classes: int | None = None, offline: bool | None = None,
                    endpoint: str | None = None) -> ModelSource:
    """Any ref that names a network, trained or not (what ``info`` takes).

    A genotype (a reference name such as ``mobilenetv3-small``, a JSON file, inline JSON or the one-line
    form) gives its architecture with fresh weights (kind ``"genotype"``; ``in_chans``, ``resolution`` and
    ``num_classes`` override the genotype's). A zoo name, ``hf-hub:`` ref or
    artifact folder gives the trained network through :func:`resolve_model`; its weights fix its input and
    classes, so overrides are refused. A plain name that is neither fails naming the closest of both kinds.
    """
    if looks_like_genotype(ref):
        genotype = resolve_genotype(ref, in_chans=in_chans, resolution=resolution, num_classes=num_classes)
        return ModelSource(build_model(genotype).eval(), ref, "genotype", None, None)
    if not (Path(ref).expanduser().is_dir() or ref.startswith(HF_HUB_PREFIX) or os.sep in ref
            or ref.startswith(".") or ref in list_models(include_fixtures=True)):
        raise unknown_model(ref)  # the line every command says of this name
    if (in_chans, resolution, num_classes) != (None, None, None):
        raise MenasError(f"{ref} is a trained model: its weights fix its input and classes, so --in-chans, "
                         "--resolution and --num-classes apply to genotypes only")
    return resolve_model(ref, offline=offline, endpoint=endpoint)


def load_source(ref: str, **kwargs) -> ModelSource:
    """:func:`load` ``ref`` (no genotype refs) into a :class:`ModelSource`; kwargs go to :func:`resolve`."""
    artifact, resolved = load(ref, **kwargs)
    kind = "artifact" if resolved.source == "local" else "hub"
    return ModelSource.from_artifact(artifact, ref, kind, revision=resolved.revision)


def create_model(name_or_ref: str, pretrained: bool = True, num_classes: int | None = None,
                 in_chans: int | None = None, **kwargs) -> MobileNetMT:
    """timm-style factory: ``create_model("mt-test")`` returns the trained network in eval mode.

    ``name_or_ref`` is anything :func:`load` takes (a zoo name, ``hf-hub:ORG/NAME[@REV]``, an artifact
    folder), or an architecture without weights (a reference such as ``mobilenetv3-small``, a genotype
    file, inline JSON or the one-line form), which needs ``pretrained=False``. ``pretrained=False`` builds
    the architecture with fresh weights. ``num_classes`` and ``in_chans`` change the classifier and the
    stem; with pretrained weights every other weight is kept (:func:`menas_zoo.nets.adapt_model`).
    The artifact's config is kept on the model as ``model.zoo_config`` (labels, input spec with mean/std,
    metrics; ``None`` for an architecture without weights). ``kwargs`` go to :func:`resolve`.
    """
    for value, what in ((num_classes, "num_classes"), (in_chans, "in_chans")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise MenasError(f"{what} must be a positive integer, got {value!r}")
    if looks_like_genotype(name_or_ref):
        if pretrained:
            raise MenasError(f"{name_or_ref!r} is an architecture without weights: pass pretrained=False to build "
                             f"it untrained (models with weights: {', '.join(list_models(pretrained=True)) or 'none'})")
        model = build_model(_with(resolve_genotype(name_or_ref), num_classes, in_chans))
        model.zoo_config = None
        return model
    if pretrained:
        artifact, _ = load(name_or_ref, **kwargs)
        model, config = adapt_model(artifact.model, num_classes=num_classes, in_chans=in_chans), artifact.config
    else:
        config = read_config(resolve(name_or_ref, **kwargs).path)
        model = build_model(_with(Genotype.from_dict(config["genotype"]), num_classes, in_chans))
    model.zoo_config = _adapted_config(config, model.genotype)
    return model


def _with(genotype: Genotype, num_classes: int | None, in_chans: int | None) -> Genotype:
    return dataclasses.replace(genotype, num_classes=num_classes or genotype.num_classes,
                               in_chans=in_chans or genotype.in_chans)


def _adapted_config(config: dict, genotype: Genotype) -> dict:
    """The artifact's config, told apart from the model when its classes or channels were changed:
    labels go with other classes, and mean/std follow the stem (averaged or repeated) with other channels."""
    old = Genotype.from_dict(config["genotype"])
    if (old.num_classes, old.in_chans) == (genotype.num_classes, genotype.in_chans):
        return config
    config = {**config, "genotype": genotype.to_dict(),
              "adapted": {"from_num_classes": old.num_classes, "from_in_chans": old.in_chans}}
    if old.num_classes != genotype.num_classes:
        config["labels"] = None
    spec = dict(config.get("input_spec") or {})
    if old.in_chans != genotype.in_chans:
        spec["in_chans"] = genotype.in_chans
        for key in ("mean", "std"):
            if spec.get(key) is not None:
                values = list(spec[key])
                spec[key] = ([sum(values) / len(values)] if genotype.in_chans == 1
                             else [values[i % len(values)] for i in range(genotype.in_chans)])
        config["input_spec"] = spec
    return config
