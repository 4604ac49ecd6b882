"""The MobileNet3-MT genotype: one dataclass, one block-string codec, one JSON form.

A genotype describes a whole network: a stem conv, stages of inverted-residual blocks, a 1x1 head
conv and an optional fully connected layer before the classifier. Each block is one short string in
the spirit of timm's block strings::

    k5_h96_c40_s2_se_hs      kernel 5, 96 hidden channels, 40 out, stride 2, SE on, h-swish
    k3_c16_s1_re             no expand conv (depthwise on the input width), relu, no SE
    k3_h77_c40_s1_se24_re    a pruned block: 77 hidden channels, SE with an explicit 24-wide squeeze

``se`` alone means the default squeeze width (hidden / 4 rounded to 8, as in MobileNetV3); ``seN``
keeps an explicit width, which a pruned block needs because pruning narrows ``h`` but not the SE.
Parsing and printing are exact inverses on canonical strings, and every error names the stage,
the block and the field at fault.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from menas_zoo.errors import GenotypeError
from menas_zoo.io import MAX_JSON_BYTES

SCHEMA_VERSION = 1
ACTIVATIONS = {"re": "relu", "hs": "hswish"}
#: Stem stride of each built-in search profile: a genotype of one of them need not state its own. A
#: genotype of any other profile (a profile file of one's own) carries ``stem_stride`` itself.
PROFILE_STEM_STRIDE = {"small": 1, "tiny": 1, "imagenet": 2}
MAX_STEM_STRIDE = 4
#: The profile a one-line genotype without ``profile=NAME`` belongs to.
COMPACT_PROFILE = "small"
_COMPACT_NAME = re.compile(r"[A-Za-z0-9][\w.+-]*")
# Bounds of any genotype this package builds, far above every profile (MobileNetV3-Large is 1280 wide,
# 15 blocks deep, 224 px). A genotype from a file or a repo is checked against them before a single
# tensor exists, so an absurd one (30,000,000 channels, 10^9 classes) is one line, not gigabytes.
MAX_CHANNELS = 8192  # stem, head, fc, block out/hidden/SE widths
MAX_KERNEL = 15
MAX_BLOCKS = 64
MAX_STAGES = 16
MAX_CLASSES = 100_000
MAX_RESOLUTION = 2048
MAX_IN_CHANS = 64


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (>= divisor) without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def default_se_width(channels: int) -> int:
    """MobileNetV3's squeeze width for an SE over ``channels`` channels."""
    return make_divisible(channels // 4, 8)


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block. ``hidden`` is None for a block without an expand conv."""

    kernel: int
    out: int
    stride: int = 1
    hidden: int | None = None
    se: int = 0  # squeeze width; 0 = no SE
    act: str = "relu"  # "relu" | "hswish"

    def dw_channels(self, in_chans: int) -> int:
        """Width of the depthwise conv: the hidden width, or the input width without an expand."""
        return self.hidden if self.hidden is not None else in_chans

    def has_shortcut(self, in_chans: int) -> bool:
        return self.stride == 1 and in_chans == self.out

    # -- codec ---------------------------------------------------------------------------------
    def to_string(self, in_chans: int | None = None) -> str:
        """Canonical block string. ``in_chans`` is needed to print a default-width SE as ``se``."""
        parts = [f"k{self.kernel}"]
        if self.hidden is not None:
            parts.append(f"h{self.hidden}")
        parts += [f"c{self.out}", f"s{self.stride}"]
        if self.se:
            dw = self.hidden if self.hidden is not None else in_chans
            parts.append("se" if dw is not None and self.se == default_se_width(dw) else f"se{self.se}")
        parts.append("hs" if self.act == "hswish" else "re")
        return "_".join(parts)

    @classmethod
    def parse(cls, text: str, in_chans: int | None = None, where: str = "block") -> BlockSpec:
        """Parse ``k5_h96_c40_s2_se_hs``. A bare ``se`` needs ``in_chans`` when there is no ``h``."""
        fields: dict[str, Any] = {}
        se_token: str | None = None
        if not isinstance(text, str) or not text:
            raise GenotypeError(f"{where}: expected a block string like 'k5_h96_c40_s2_se_hs', got {text!r}")
        for token in text.split("_"):
            match = re.fullmatch(r"(k|h|c|s|se)(\d*)|(re|hs)", token)
            if not match:
                raise GenotypeError(f"{where} {text!r}: unknown field {token!r} (fields: k, h, c, s, se, re|hs)")
            key, number, act = match.groups()
            if number and len(number) > 9:
                raise GenotypeError(f"{where}: field {key!r} has an absurd value ({len(number)} digits)")
            if act:
                key, value = "act", ACTIVATIONS[act]
            elif key == "se":
                se_token, value = token, number
            elif not number:
                raise GenotypeError(f"{where} {text!r}: field {token!r} needs a number")
            else:
                value = int(number)
            if key in fields:
                raise GenotypeError(f"{where} {text!r}: field {key!r} given twice")
            fields[key] = value
        for required, name in (("k", "kernel"), ("c", "out channels"), ("s", "stride")):
            if required not in fields:
                raise GenotypeError(f"{where} {text!r}: missing field {required!r} ({name})")
        hidden = fields.get("h")
        se = 0
        if se_token is not None:
            if se_token != "se":
                se = int(se_token[2:])
            else:
                dw = hidden if hidden is not None else in_chans
                if dw is None:
                    raise GenotypeError(f"{where} {text!r}: 'se' without 'h' needs the input width; write seN")
                se = default_se_width(dw)
        block = cls(kernel=fields["k"], out=fields["c"], stride=fields["s"], hidden=hidden, se=se,
                    act=fields.get("act", "relu"))
        block.validate(where=f"{where} {text!r}")
        return block

    def validate(self, where: str = "block") -> None:
        for name in ("kernel", "out", "stride", "hidden", "se"):
            value = getattr(self, name)
            if not (value is None and name == "hidden") and (not isinstance(value, int) or isinstance(value, bool)):
                raise GenotypeError(f"{where}: {name} must be an integer, got {value!r}")
        if self.kernel < 1 or self.kernel % 2 == 0 or self.kernel > MAX_KERNEL:
            raise GenotypeError(f"{where}: kernel must be an odd number up to {MAX_KERNEL} (3, 5 or 7), "
                                f"got {self.kernel}")
        if not 1 <= self.out <= MAX_CHANNELS:
            raise GenotypeError(f"{where}: out channels must be in 1..{MAX_CHANNELS}, got {self.out}")
        if self.stride not in (1, 2):
            raise GenotypeError(f"{where}: stride must be 1 or 2, got {self.stride}")
        if self.hidden is not None and not 1 <= self.hidden <= MAX_CHANNELS:
            raise GenotypeError(f"{where}: hidden channels must be in 1..{MAX_CHANNELS}, got {self.hidden}")
        if not 0 <= self.se <= MAX_CHANNELS:
            raise GenotypeError(f"{where}: SE width must be in 0..{MAX_CHANNELS}, got {self.se}")
        if self.act not in ACTIVATIONS.values():
            raise GenotypeError(f"{where}: activation must be relu or hswish, got {self.act!r}")


@dataclass(frozen=True)
class Genotype:
    """A whole MobileNet3-MT network. Hashable, so costs can be cached per genotype."""

    stem: int
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: int
    fc: int = 0  # 0 = classifier directly after pooling
    in_chans: int = 1
    resolution: int = 28
    num_classes: int = 10
    profile: str = "small"
    stem_stride: int | None = None  # None: the built-in profile's (PROFILE_STEM_STRIDE)

    def __post_init__(self) -> None:
        # Accept lists for convenience; store tuples so the genotype stays hashable.
        object.__setattr__(self, "stages", tuple(tuple(stage) for stage in self.stages))
        if not isinstance(self.profile, str) or not self.profile.strip():
            raise GenotypeError(f"genotype: profile must be a name, got {self.profile!r}")
        if self.stem_stride is None:
            if self.profile not in PROFILE_STEM_STRIDE:
                raise GenotypeError(f"genotype: profile {self.profile!r} is not built in "
                                    f"({', '.join(PROFILE_STEM_STRIDE)}), so the genotype needs its stem_stride")
            object.__setattr__(self, "stem_stride", PROFILE_STEM_STRIDE[self.profile])
        self.validate()

    def blocks(self) -> Iterator[tuple[int, int, int, BlockSpec]]:
        """Yield ``(stage, index, in_chans, block)`` for every block, in order."""
        in_chans = self.stem
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                yield s, b, in_chans, block
                in_chans = block.out

    @property
    def last_channels(self) -> int:
        return self.stages[-1][-1].out

    @property
    def depth(self) -> int:
        return sum(len(stage) for stage in self.stages)

    def replace(self, **changes: Any) -> Genotype:
        """A copy with ``changes``; another ``profile`` brings its own stem stride unless one is given."""
        if "profile" in changes and "stem_stride" not in changes:
            changes["stem_stride"] = None
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        for name, low, high in (("stem_stride", 1, MAX_STEM_STRIDE), ("stem", 1, MAX_CHANNELS),
                                ("head", 1, MAX_CHANNELS), ("fc", 0, MAX_CHANNELS),
                                ("in_chans", 1, MAX_IN_CHANS), ("resolution", 1, MAX_RESOLUTION),
                                ("num_classes", 2, MAX_CLASSES)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                extra = " (0 = none)" if name == "fc" else ""
                raise GenotypeError(f"genotype: {name} must be an integer in {low}..{high}{extra}, got {value!r}")
        if not self.stages or any(len(stage) == 0 for stage in self.stages):
            raise GenotypeError("genotype: needs at least one stage and no empty stage")
        check_depth(len(self.stages), self.depth)
        size = -(-self.resolution // self.stem_stride)
        for s, b, _, block in self.blocks():
            if not isinstance(block, BlockSpec):
                raise GenotypeError(f"stage {s + 1}, block {b + 1}: expected a BlockSpec, got {block!r}")
            block.validate(where=f"stage {s + 1}, block {b + 1}")
            size = -(-size // block.stride)
        if size < 1:  # pragma: no cover - ceil division never reaches 0; kept as a guard
            raise GenotypeError("genotype: the strides reduce the input below one pixel")

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        stages, in_chans = [], self.stem
        for stage in self.stages:
            strings = []
            for block in stage:
                strings.append(block.to_string(in_chans))
                in_chans = block.out
            stages.append(strings)
        data = {"version": SCHEMA_VERSION, "profile": self.profile, "in_chans": self.in_chans,
                "resolution": self.resolution, "num_classes": self.num_classes, "stem": self.stem,
                "stages": stages, "head": self.head, "fc": self.fc}
        if self.stem_stride != PROFILE_STEM_STRIDE.get(self.profile):  # the profile's says it otherwise
            data["stem_stride"] = self.stem_stride
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        if not isinstance(data, dict):
            raise GenotypeError(f"genotype: expected a JSON object, got {type(data).__name__}")
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise GenotypeError(f"genotype: unsupported schema version {version!r} "
                                f"(this menas-zoo reads {SCHEMA_VERSION})")
        unknown = set(data) - {"version", "profile", "in_chans", "resolution", "num_classes", "stem", "stages",
                               "head", "fc", "stem_stride"}
        if unknown:
            raise GenotypeError(f"genotype: unknown keys {sorted(unknown)}")
        for key in ("stem", "stages", "head"):
            if key not in data:
                raise GenotypeError(f"genotype: missing key {key!r}")
        if not isinstance(data["stages"], list) or not all(isinstance(s, list) for s in data["stages"]):
            raise GenotypeError("genotype: 'stages' must be a list of lists of block strings")
        check_depth(len(data["stages"]), sum(len(stage) for stage in data["stages"]))  # before parsing them all
        if not isinstance(data["stem"], int) or isinstance(data["stem"], bool):
            raise GenotypeError(f"genotype: stem must be an integer, got {data['stem']!r}")
        stages, in_chans = [], data["stem"]
        for s, stage in enumerate(data["stages"]):
            blocks = []
            for b, text in enumerate(stage):
                block = BlockSpec.parse(text, in_chans, where=f"stage {s + 1}, block {b + 1}")
                blocks.append(block)
                in_chans = block.out
            stages.append(tuple(blocks))
        fields = {k: data[k] for k in ("profile", "in_chans", "resolution", "num_classes", "fc", "stem_stride")
                  if k in data}
        return cls(stem=data["stem"], stages=tuple(stages), head=data["head"], **fields)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise GenotypeError("genotype: the JSON is nested too deeply to be a genotype") from None
        return cls.from_dict(data)

    # -- one-line form, for the command line ----------------------------------------------------
    def to_compact(self) -> str:
        """``stem16 / k3_c16_s1_re / k3_h64_c24_s2_re,k3_h72_c24_s1_re / head576 / fc1024``.

        A profile other than ``small`` (what a line without one is read as) ends the line as
        ``profile=NAME``, and a stem stride other than that profile's is written ``stem16_s2``, so the line
        keeps what the JSON form keeps of the architecture; input and classes stay outside it. A profile
        name a line cannot hold (spaces, ``/``) is left out, and its stride then always written."""
        data = self.to_dict()
        profile = self.profile if self.profile != COMPACT_PROFILE and _COMPACT_NAME.fullmatch(self.profile) else None
        stem = f"stem{self.stem}"
        if self.stem_stride != PROFILE_STEM_STRIDE.get(profile or COMPACT_PROFILE):
            stem += f"_s{self.stem_stride}"
        parts = [stem] + [",".join(stage) for stage in data["stages"]] + [f"head{self.head}"]
        parts += ([f"fc{self.fc}"] if self.fc else []) + ([f"profile={profile}"] if profile else [])
        return " / ".join(parts)

    @classmethod
    def from_compact(cls, text: str, **globals_: Any) -> Genotype:
        """The inverse of :meth:`to_compact`; ``globals_`` (``in_chans``, ``resolution``, ``num_classes``,
        ``profile``) give what the line does not say. A line without ``profile=`` or ``_sN`` reads as it
        always has: the given profile (default ``small``) with that profile's stem stride."""
        parts = [p.strip() for p in text.split("/")]
        stem = re.fullmatch(r"stem(\d{1,9})(?:_s(\d{1,9}))?", parts[0])
        if len(parts) < 3 or not stem:
            raise GenotypeError("genotype string: expected 'stem16[_s2] / BLOCK,BLOCK / ... / head576 [/ fc1024] "
                                "[/ profile=NAME]'")
        if parts[-1].startswith("profile="):
            named = parts.pop()[len("profile="):]
            if not _COMPACT_NAME.fullmatch(named):
                raise GenotypeError(f"genotype string: profile name {named!r} is not a plain name")
            if globals_.get("profile", named) != named:
                raise GenotypeError(f"genotype string: the line says profile={named}, not {globals_['profile']}")
            globals_ = {**globals_, "profile": named}
        fc = 0
        if re.fullmatch(r"fc\d+", parts[-1]):
            fc = int(parts.pop()[2:])
        if not re.fullmatch(r"head\d+", parts[-1]):
            raise GenotypeError(f"genotype string: expected 'headN' before the end, got {parts[-1]!r}")
        stages = [[b.strip() for b in stage.split(",")] for stage in parts[1:-1]]
        data = {"stem": int(stem[1]), "stages": stages, "head": int(parts[-1][4:]), "fc": fc, **globals_}
        if stem[2] is not None:
            data["stem_stride"] = int(stem[2])
        return cls.from_dict(data)


def check_depth(stages: int, blocks: int) -> None:
    if stages > MAX_STAGES or blocks > MAX_BLOCKS:
        raise GenotypeError(f"genotype: {stages} stages and {blocks} blocks; at most {MAX_STAGES} stages and "
                            f"{MAX_BLOCKS} blocks are supported")


def load_genotype(path: str | Path) -> Genotype:
    """Read a genotype JSON file, with a clear error for a missing or unreadable file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise GenotypeError(f"genotype file {path} is over {MAX_JSON_BYTES // 1024} KiB; a genotype is a few KB")
        text = path.read_text()
    except UnicodeDecodeError:
        raise GenotypeError(f"genotype file {path} is not text") from None
    except OSError as exc:
        raise GenotypeError(f"cannot read genotype file {path}: {exc.strerror or exc}") from None
    return Genotype.from_json(text)
