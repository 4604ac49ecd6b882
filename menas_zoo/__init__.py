"""menas-zoo: small, fast image classifiers found by MENAS, ready to load, export and publish."""

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import GenotypeError, MenasError
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.space import BlockSpec, Genotype, reference_genotype, sample_genotype

__version__ = "0.1.0"

__all__ = ["BlockSpec", "Genotype", "GenotypeError", "MenasError", "MobileNetMT", "__version__", "build_model", "create_model",
           "genotype_cost", "list_models", "reference_genotype", "sample_genotype"]


def __getattr__(name: str):
    # The zoo API pulls in huggingface_hub; import it on first use so `import menas_zoo` stays light.
    if name in ("create_model", "list_models"):
        from menas_zoo import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'menas_zoo' has no attribute {name!r}")
