"""menas-zoo: small, fast image classifiers found by MENAS, ready to load, export and publish.

Names are imported on first use, so ``import menas_zoo`` (and ``menas_zoo.edge``, the torch-free runtime
that classifies images with an exported ONNX file) costs no torch import.
"""

from __future__ import annotations

from menas_zoo.errors import GenotypeError, MenasError
from menas_zoo.lazy import lazy_attributes

__version__ = "0.1.0"

__all__ = ["BlockSpec", "Genotype", "GenotypeError", "MenasError", "MobileNetMT", "TrainConfig", "__version__",
           "build_model", "create_model", "genotype_cost", "list_models", "reference_genotype", "sample_genotype",
           "train_artifact"]

__getattr__, __dir__ = lazy_attributes(globals(), {
    "genotype_cost": "menas_zoo.costs",
    "MobileNetMT": "menas_zoo.nets",
    "build_model": "menas_zoo.nets",
    "BlockSpec": "menas_zoo.space",
    "Genotype": "menas_zoo.space",
    "reference_genotype": "menas_zoo.space",
    "sample_genotype": "menas_zoo.space",
    "create_model": "menas_zoo.hub",
    "list_models": "menas_zoo.hub",
    "TrainConfig": "menas_zoo.train",
    "train_artifact": "menas_zoo.train",
})
