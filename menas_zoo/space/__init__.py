"""The MobileNet3-MT search space: genotype codec, reference genotypes and seeded sampling."""

from menas_zoo.space.genotype import BlockSpec, Genotype, load_genotype, make_divisible
from menas_zoo.space.references import looks_like_genotype, reference_genotype, reference_names, resolve_genotype
from menas_zoo.space.sampling import PROFILES, SearchProfile, get_profile, load_profile, sample_genotype

__all__ = ["BlockSpec", "Genotype", "PROFILES", "SearchProfile", "get_profile", "load_genotype", "load_profile",
           "looks_like_genotype", "make_divisible", "reference_genotype", "reference_names", "resolve_genotype",
           "sample_genotype"]
