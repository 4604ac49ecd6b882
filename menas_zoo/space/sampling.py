"""Search profiles: which genotypes a search may sample, and seeded sampling from them.

The genotype format is general; a profile bounds what is drawn and sets the stem's stride, which every
genotype drawn from it carries (a profile of one's own may have any name). ``small`` is for 28 or 32 px
inputs (Fashion-MNIST, CIFAR-10) with a stride-1 stem and MobileNetV3-Large's widths (median draw 1.4M
params, 52M MACs); ``tiny`` is the same layout around MobileNetV3-Small's widths with at most 3 blocks a
stage, the zoo's size classes (100K to 1M params; median draw 0.4M params, 18M MACs); ``imagenet`` is
for 224 px with a stride-2 stem.
Per block: kernel, expansion (-> an explicit hidden width), SE, activation. Per stage: depth and an
output width from a grid around MobileNetV3's widths. Global: stem, head and fc widths.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from menas_zoo.errors import GenotypeError
from menas_zoo.space.genotype import PROFILE_STEM_STRIDE, BlockSpec, Genotype, default_se_width, make_divisible


@dataclass(frozen=True)
class SearchProfile:
    name: str
    resolution: int
    stage_strides: tuple[int, ...]
    base_widths: tuple[int, ...]  # MobileNetV3-Large's stage widths, scaled by width_mults
    max_depth: int
    stem_choices: tuple[int, ...]
    head_choices: tuple[int, ...]
    fc_choices: tuple[int, ...]
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    width_mults: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    activations: tuple[str, ...] = ("relu", "hswish")
    stem_stride: int | None = None  # None: the built-in profile's of this name, else 1

    def __post_init__(self) -> None:
        if self.stem_stride is None:
            object.__setattr__(self, "stem_stride", PROFILE_STEM_STRIDE.get(self.name, 1))

    @classmethod
    def from_dict(cls, data: dict) -> SearchProfile:
        """A profile from its fields as JSON holds them (lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def stage_width_choices(self, stage: int) -> tuple[int, ...]:
        return tuple(sorted({make_divisible(self.base_widths[stage] * m) for m in self.width_mults}))


PROFILES = {
    "small": SearchProfile(
        name="small", resolution=28, stage_strides=(1, 2, 2, 1, 2), base_widths=(24, 40, 80, 112, 160),
        max_depth=4, stem_choices=(8, 16, 24), head_choices=(128, 256, 384, 512, 640, 960),
        fc_choices=(0, 128, 256, 512, 1024),
    ),
    "tiny": SearchProfile(
        name="tiny", resolution=28, stage_strides=(1, 2, 2, 1, 2), base_widths=(16, 24, 40, 48, 96),
        max_depth=3, stem_choices=(8, 16), head_choices=(64, 128, 256, 384, 576), fc_choices=(0, 128, 256),
    ),
    "imagenet": SearchProfile(
        name="imagenet", resolution=224, stage_strides=(2, 2, 2, 1, 2), base_widths=(24, 40, 80, 112, 160),
        max_depth=6, stem_choices=(16, 24, 32), head_choices=(576, 768, 960, 1280),
        fc_choices=(0, 1024, 1280),
    ),
}


def get_profile(name: str) -> SearchProfile:
    """A built-in profile by name, or a JSON file (``*.json``) of :class:`SearchProfile` fields:
    a space of one's own."""
    if name in PROFILES:
        return PROFILES[name]
    if name.endswith(".json"):
        return load_profile(name)
    raise GenotypeError(f"unknown search profile {name!r}; known: {', '.join(PROFILES)}, or a JSON file of "
                        "SearchProfile fields")


def load_profile(path: str | Path) -> SearchProfile:
    """A :class:`SearchProfile` from a JSON file of its fields (lists become tuples)."""
    try:
        data = json.loads(Path(path).read_text())
        return SearchProfile.from_dict(data)
    except OSError as exc:
        raise GenotypeError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise GenotypeError(f"profile {path} is not a valid search profile ({exc})") from None


def sample_block(profile: SearchProfile, rng: random.Random, in_chans: int, out: int, stride: int) -> BlockSpec:
    """Draw one block's genes; the hidden width is an explicit integer (expansion x input, rounded to 8)."""
    hidden = make_divisible(in_chans * rng.choice(profile.expansions))
    se = default_se_width(hidden) if rng.random() < 0.5 else 0
    return BlockSpec(kernel=rng.choice(profile.kernels), out=out, stride=stride, hidden=hidden, se=se,
                     act=rng.choice(profile.activations))


def sample_stage(profile: SearchProfile, rng: random.Random, stage: int, in_chans: int) -> tuple[BlockSpec, ...]:
    out = rng.choice(profile.stage_width_choices(stage))
    depth = rng.randint(1, profile.max_depth)
    blocks = []
    for b in range(depth):
        stride = profile.stage_strides[stage] if b == 0 else 1
        blocks.append(sample_block(profile, rng, in_chans if b == 0 else out, out, stride))
    return tuple(blocks)


def sample_genotype(profile: str | SearchProfile = "small", seed: int | random.Random = 0, *, in_chans: int = 1,
                    num_classes: int = 10, resolution: int | None = None, max_params: int | None = None,
                    max_macs: int | None = None, low: float = 0.6) -> Genotype:
    """A random genotype of ``profile``; the same seed always gives the same genotype.

    With ``max_params``/``max_macs`` the draw is fitted to the budget (``budget.py``): it always fits,
    at a size spread over ``[low, 1.0]`` of the limit; a budget that no genotype of the profile can
    meet is a :class:`GenotypeError`.
    """
    from menas_zoo.space.budget import Budget, check_feasible, fit_to_budget

    profile = get_profile(profile) if isinstance(profile, str) else profile
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    budget = Budget(max_params, max_macs)
    if budget:
        check_feasible(profile, budget, in_chans=in_chans, num_classes=num_classes, resolution=resolution)
        return fit_to_budget(_draw(profile, rng, in_chans, num_classes, resolution), profile, budget, rng, low)
    return _draw(profile, rng, in_chans, num_classes, resolution)


def _draw(profile: SearchProfile, rng: random.Random, in_chans: int, num_classes: int,
          resolution: int | None) -> Genotype:
    stem = rng.choice(profile.stem_choices)
    stages, in_ch = [], stem
    for s in range(len(profile.stage_strides)):
        stage = sample_stage(profile, rng, s, in_ch)
        stages.append(stage)
        in_ch = stage[-1].out
    return Genotype(stem=stem, stages=tuple(stages), head=rng.choice(profile.head_choices),
                    fc=rng.choice(profile.fc_choices), in_chans=in_chans, num_classes=num_classes,
                    resolution=resolution or profile.resolution, profile=profile.name,
                    stem_stride=profile.stem_stride)
