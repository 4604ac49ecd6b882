"""The zoo on the Hugging Face Hub: registry of published models, resolution of refs, model cards, push.

    registry.py   names -> (repo id, pinned revision, file sha256s, metrics); ``list_models`` (zoo models
                  and the reference architectures)
    resolve.py    ref -> artifact folder (local, HF cache, bundled copy, Hub); ``create_model``, ``load``,
                  ``resolve_model`` (also a genotype with a weights file), ``resolve_network`` (also
                  a genotype alone, untrained)
    card.py       MODEL_CARD.md template -> README.md, every number taken from the artifact's config
    push.py       artifact folder -> a Hub repo commit

Names are imported on first use: reading the registry (``menas-zoo list``) loads no torch.
"""

from menas_zoo.lazy import lazy_attributes

__all__ = ["ModelSource", "Resolved", "ZooEntry", "create_model", "get_entry", "list_models", "load", "resolve",
           "resolve_model", "resolve_network"]

__getattr__, __dir__ = lazy_attributes(globals(), {
    "ZooEntry": "menas_zoo.hub.registry", "get_entry": "menas_zoo.hub.registry",
    "list_models": "menas_zoo.hub.registry", "Resolved": "menas_zoo.hub.resolve",
    "create_model": "menas_zoo.hub.resolve", "load": "menas_zoo.hub.resolve", "resolve": "menas_zoo.hub.resolve",
    "ModelSource": "menas_zoo.hub.resolve", "resolve_model": "menas_zoo.hub.resolve",
    "resolve_network": "menas_zoo.hub.resolve",
})
