"""Reference genotypes: MobileNetV3-Small and -Large written as MobileNet3-MT genotypes.

Both are members of the space, and their parameter counts equal torchvision's (a test proves it).
Each fits on one screen as a table of block strings, one list per stage.
"""

from __future__ import annotations

from pathlib import Path

from menas_zoo.errors import GenotypeError, MenasError
from menas_zoo.space.genotype import Genotype, load_genotype

_TABLES = {
    "mobilenetv3-small": {
        "stem": 16,
        "stages": [
            ["k3_c16_s2_se_re"],
            ["k3_h72_c24_s2_re", "k3_h88_c24_s1_re"],
            ["k5_h96_c40_s2_se_hs", "k5_h240_c40_s1_se_hs", "k5_h240_c40_s1_se_hs"],
            ["k5_h120_c48_s1_se_hs", "k5_h144_c48_s1_se_hs"],
            ["k5_h288_c96_s2_se_hs", "k5_h576_c96_s1_se_hs", "k5_h576_c96_s1_se_hs"],
        ],
        "head": 576,
        "fc": 1024,
    },
    "mobilenetv3-large": {
        "stem": 16,
        "stages": [
            ["k3_c16_s1_re", "k3_h64_c24_s2_re", "k3_h72_c24_s1_re"],
            ["k5_h72_c40_s2_se_re", "k5_h120_c40_s1_se_re", "k5_h120_c40_s1_se_re"],
            ["k3_h240_c80_s2_hs", "k3_h200_c80_s1_hs", "k3_h184_c80_s1_hs", "k3_h184_c80_s1_hs"],
            ["k3_h480_c112_s1_se_hs", "k3_h672_c112_s1_se_hs"],
            ["k5_h672_c160_s2_se_hs", "k5_h960_c160_s1_se_hs", "k5_h960_c160_s1_se_hs"],
        ],
        "head": 960,
        "fc": 1280,
    },
}


def reference_names() -> list[str]:
    return sorted(_TABLES)


def reference_genotype(name: str, in_chans: int = 3, resolution: int = 224, num_classes: int = 1000) -> Genotype:
    """The named reference, by default as torchvision builds it (3x224x224, 1000 classes, stem stride 2)."""
    if name not in _TABLES:
        raise GenotypeError(f"unknown reference genotype {name!r}; known: {', '.join(reference_names())}")
    return Genotype.from_dict({**_TABLES[name], "profile": "imagenet", "in_chans": in_chans,
                               "resolution": resolution, "num_classes": num_classes})


def _artifact_genotype(directory: Path) -> Genotype:
    """The genotype an artifact folder's config.json describes (a model's architecture, with or without
    its weights: a search's dropped individual is retrained from it), read and checked as any artifact's."""
    from menas_zoo.artifact import CONFIG, read_config  # torch: only when a folder is given

    try:
        data = read_config(directory)
    except MenasError as exc:
        raise GenotypeError(str(exc)) from None
    try:
        return Genotype.from_dict(data["genotype"])
    except GenotypeError as exc:
        raise GenotypeError(f"{directory / CONFIG}: {exc}") from None


def looks_like_genotype(ref: str) -> bool:
    """Whether ``ref`` names an architecture rather than a trained model: a reference name, inline JSON,
    a one-line genotype, or a genotype file (or a run folder holding genotype.json but no weights)."""
    path = Path(ref)
    return (ref in _TABLES or ref.lstrip().startswith(("{", "stem")) or path.is_file()
            or ((path / "genotype.json").is_file() and not (path / "model.safetensors").is_file()))


def resolve_genotype(ref: str, *, in_chans: int | None = None, resolution: int | None = None,
                     num_classes: int | None = None) -> Genotype:
    """A genotype from a reference name, a JSON file, inline JSON, or the one-line form
    (``stem16 / k3_c16_s1_re / ... / head576``), or the architecture of a run or artifact folder (its
    genotype.json or config.json, weights or not). Overrides apply to every form alike: a genotype's input and
    classes are not its architecture, so a JSON genotype trains on other data as a reference does."""
    overrides = {k: v for k, v in (("in_chans", in_chans), ("resolution", resolution),
                                   ("num_classes", num_classes)) if v is not None}
    if ref in _TABLES:
        return reference_genotype(ref, **overrides)
    if ref.lstrip().startswith("stem"):
        return Genotype.from_compact(ref, **overrides)
    if ref.lstrip().startswith("{"):
        genotype = Genotype.from_json(ref)
    else:
        path = Path(ref)
        if path.is_dir() and (path / "genotype.json").is_file():
            path = path / "genotype.json"
        elif path.is_dir() and (path / "config.json").is_file():
            return _with_overrides(_artifact_genotype(path), overrides)
        if not path.is_file():
            raise GenotypeError(f"{ref!r} is not a reference genotype ({', '.join(reference_names())}), a genotype "
                                "JSON file, inline JSON, or a one-line genotype 'stem16 / BLOCK,... / head576'")
        genotype = load_genotype(path)
    return _with_overrides(genotype, overrides)


def _with_overrides(genotype: Genotype, overrides: dict[str, int]) -> Genotype:
    return genotype.replace(**overrides) if overrides else genotype
