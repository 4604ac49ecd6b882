"""The zoo on the Hugging Face Hub: registry of published models, resolution of refs, model cards, push.

    registry.py   names -> (repo id, pinned revision, file sha256s, metrics); ``list_models``
    resolve.py    ref -> artifact folder (local, HF cache, bundled copy, Hub); ``create_model``, ``load``
    card.py       MODEL_CARD.md template -> README.md, every number taken from the artifact's config
    push.py       artifact folder -> a Hub repo commit
"""

from menas_zoo.hub.registry import ZooEntry, get_entry, list_models
from menas_zoo.hub.resolve import Resolved, create_model, load, resolve

__all__ = ["Resolved", "ZooEntry", "create_model", "get_entry", "list_models", "load", "resolve"]
