"""menas-zoo: small, fast image classifiers found by MENAS, ready to load, export and publish."""

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import GenotypeError, MenasError
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.space import BlockSpec, Genotype, reference_genotype, sample_genotype

__version__ = "0.1.0"

__all__ = ["BlockSpec", "Genotype", "GenotypeError", "MenasError", "MobileNetMT", "__version__", "build_model",
           "genotype_cost", "reference_genotype", "sample_genotype"]
