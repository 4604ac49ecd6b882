"""The zoo's registry: a few typed entries read from ``registry.json``, shipped in the package.

Each entry pins a Hub repo to one commit and to the sha256 of every file at that commit, so a name
means the same bytes wherever it is loaded from (HF cache, the copy bundled in the package, the Hub).
Its metrics are those in the artifact's config.json; a test recomputes them from the live model.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from menas_zoo.errors import MenasError

REGISTRY_FILE = "registry.json"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    repo_id: str
    revision: str  # a 40-hex commit id: exact, and offline-safe in the HF cache (a branch could move)
    files: dict[str, str]  # file name -> sha256 (the artifact: what loading downloads and verifies)
    metrics: dict[str, Any] = field(default_factory=dict)
    bundled: bool = False  # a copy ships in menas_zoo/hub/bundled/<name>/
    description: str = ""
    assets: dict[str, str] = field(default_factory=dict)  # deployment files (ONNX) -> sha256, in the same repo
    fixture: bool = False  # kept for the test suite: loadable by name, left out of list_models()


@lru_cache(maxsize=1)
def _entries() -> dict[str, ZooEntry]:
    data = json.loads(resources.files("menas_zoo.hub").joinpath(REGISTRY_FILE).read_text())
    return {name: ZooEntry(name=name, **fields) for name, fields in data["models"].items()}


def list_models(pattern: str = "*", *, pretrained: bool | None = None, include_fixtures: bool = False) -> list[str]:
    """Names ``create_model`` takes that match a shell-style ``pattern`` (``mt-*``), sorted.

    ``pretrained=True``: the zoo's trained models; ``False``: the reference architectures, which have no
    weights (``mobilenetv3-small``); ``None``: both. Test fixtures are listed only on request.
    """
    from menas_zoo.space.references import reference_names

    names = []
    if pretrained is not False:
        names += [name for name, entry in _entries().items() if include_fixtures or not entry.fixture]
    if pretrained is not True:
        names += reference_names()
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def get_entry(name: str) -> ZooEntry:
    """The entry of a registered name; an unknown name suggests the closest registered ones."""
    entries = _entries()
    if name in entries:
        return entries[name]
    raise unknown_model(name)


def unknown_model(name: str) -> MenasError:
    """The one line for a name that is neither a zoo model nor a reference genotype, whichever command was
    given it (load, info, export, bench, predict, demo): the closest names of both kinds, else all of them."""
    close = [n for n in difflib.get_close_matches(name, list_models(include_fixtures=True), n=4, cutoff=0.5)
             if n != name][:3]
    hint = (f"did you mean {', '.join(close)}?" if close else
            f"zoo models: {', '.join(list_models(pretrained=True)) or 'none'}; reference genotypes: "
            f"{', '.join(list_models(pretrained=False))}")
    return MenasError(f"unknown model {name!r}: {hint} (or pass hf-hub:ORG/NAME, an artifact folder, or where a "
                      "command takes one, a genotype)")
