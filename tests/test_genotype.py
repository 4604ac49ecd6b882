"""The genotype codec: block strings and JSON round-trip exactly; bad input names stage, block and field."""

import json
import random

import pytest

from menas_zoo.errors import GenotypeError
from menas_zoo.space import BlockSpec, Genotype, reference_genotype, reference_names, resolve_genotype, sample_genotype
from menas_zoo.space.genotype import default_se_width


@pytest.mark.parametrize("text", ["k5_h96_c40_s2_se_hs", "k3_c16_s1_re", "k7_h77_c40_s1_se16_re", "k3_h8_c8_s2_hs",
                                  "k3_c16_s2_se_re"])
def test_block_string_round_trip(text):
    in_chans = 16
    block = BlockSpec.parse(text, in_chans)
    assert block.to_string(in_chans) == text
    assert BlockSpec.parse(block.to_string(in_chans), in_chans) == block


def test_block_fields():
    block = BlockSpec.parse("k5_h96_c40_s2_se_hs")
    assert (block.kernel, block.hidden, block.out, block.stride, block.act) == (5, 96, 40, 2, "hswish")
    assert block.se == default_se_width(96) == 24
    assert BlockSpec.parse("k3_c16_s1_re", 16).hidden is None


def test_explicit_se_width_survives_when_hidden_changes():
    # A pruned block keeps its SE width even though the MobileNetV3 rule would give another one.
    block = BlockSpec.parse("k3_h77_c40_s1_se16_re")
    assert block.se == 16 and default_se_width(77) == 24
    assert block.to_string() == "k3_h77_c40_s1_se16_re"


@pytest.mark.parametrize("text, field", [
    ("k4_h96_c40_s2", "kernel"), ("k5_h96_c40_s3", "stride"), ("k5_h96_s2", "'c'"), ("k5_h96_c40_s2_xx", "'xx'"),
    ("k5_h0_c40_s2", "hidden"), ("k5_h96_c40_c41_s2", "twice"), ("k_h96_c40_s2", "needs a number"),
])
def test_bad_block_strings_name_the_field(text, field):
    with pytest.raises(GenotypeError, match=field):
        BlockSpec.parse(text, 16)


def test_genotype_errors_name_stage_and_block():
    data = sample_genotype("small", 0).to_dict()
    data["stages"][2][0] = "k5_h96_c40_s9_hs"
    with pytest.raises(GenotypeError, match=r"stage 3, block 1 'k5_h96_c40_s9_hs': stride"):
        Genotype.from_dict(data)


@pytest.mark.parametrize("change, message", [
    ({"version": 99}, "schema version"), ({"profile": "huge"}, "profile"), ({"num_classes": 1}, "num_classes"),
    ({"stages": []}, "at least one stage"), ({"head": 0}, "head"), ({"extra": 1}, "unknown keys"),
])
def test_genotype_validation(change, message):
    data = {**sample_genotype("small", 1).to_dict(), **change}
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(data)


@pytest.mark.parametrize("seed", range(20))
def test_json_and_compact_round_trip(seed):
    genotype = sample_genotype("small" if seed % 2 else "imagenet", seed, in_chans=3)
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_dict(json.loads(json.dumps(genotype.to_dict()))).to_dict() == genotype.to_dict()
    compact = genotype.to_compact()
    assert Genotype.from_compact(compact, profile=genotype.profile, in_chans=3).to_compact() == compact


def test_sampling_is_seeded_and_respects_profile():
    assert sample_genotype("small", 7) == sample_genotype("small", random.Random(7))
    assert len({sample_genotype("small", s) for s in range(10)}) == 10
    g = sample_genotype("small", 3)
    assert g.stem_stride == 1 and len(g.stages) == 5
    strides = [stage[0].stride for stage in g.stages]
    assert strides == [1, 2, 2, 1, 2]
    assert all(len(stage) <= 4 for stage in g.stages)
    assert all(b.kernel in (3, 5, 7) and b.hidden % 8 == 0 for _, _, _, b in g.blocks())


def test_references_and_resolution(tmp_path):
    assert reference_names() == ["mobilenetv3-large", "mobilenetv3-small"]
    small = reference_genotype("mobilenetv3-small")
    assert (small.in_chans, small.resolution, small.num_classes, small.stem_stride) == (3, 224, 1000, 2)
    path = tmp_path / "g.json"
    path.write_text(small.to_json())
    assert resolve_genotype(str(path)) == small
    assert resolve_genotype(small.to_json(None)) == small
    # The one-line form carries the architecture (a profile other than small as profile=NAME); input and
    # classes default to Fashion-MNIST's.
    assert small.to_compact().endswith(" / head576 / fc1024 / profile=imagenet")
    assert resolve_genotype(small.to_compact()) == small.replace(in_chans=1, resolution=28, num_classes=10)
    # A line as written before it could carry a profile still reads as the small profile's.
    old_line = small.to_compact().removesuffix(" / profile=imagenet")
    assert resolve_genotype(old_line) == small.replace(in_chans=1, resolution=28, num_classes=10, profile="small")
    with pytest.raises(GenotypeError, match="not a reference genotype"):
        resolve_genotype("mobilenetv3-tiny")
    path.write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        resolve_genotype(str(path))


def test_tiny_profile_reaches_the_zoo_size_classes():
    from menas_zoo.costs import genotype_cost

    params = [genotype_cost(sample_genotype("tiny", s)).params for s in range(40)]
    assert min(params) < 150_000 and sum(p <= 1_000_000 for p in params) >= 30
    g = sample_genotype("tiny", 0)
    assert g.stem_stride == 1 and all(len(stage) <= 3 for stage in g.stages)


def test_the_stem_stride_belongs_to_the_profile_not_its_name(tmp_path):
    """A profile file of any name works: its stem stride goes into every genotype drawn from it, which keeps
    it through JSON; genotypes of the built-in profiles keep their exact JSON (no new key)."""
    import dataclasses

    import torch
    from typer.testing import CliRunner

    from menas_zoo.cli import app
    from menas_zoo.nets import build_model
    from menas_zoo.space import PROFILES, get_profile, sample_genotype

    mine = dataclasses.replace(PROFILES["small"], name="mine", resolution=64, stem_stride=2)
    g = sample_genotype(mine, 0)
    assert (g.profile, g.stem_stride) == ("mine", 2) and g.to_dict()["stem_stride"] == 2
    assert Genotype.from_json(g.to_json()) == g
    assert build_model(g)(torch.zeros(1, 1, 64, 64)).shape == (1, 10)
    assert dataclasses.replace(PROFILES["small"], name="other").stem_stride == 1  # unnamed stride: 1
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(dataclasses.asdict(mine)))
    assert get_profile(str(path)) == mine
    result = CliRunner().invoke(app, ["space", "sample", "--profile", str(path), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert Genotype.from_json(result.stdout) == g
    for name in PROFILES:
        builtin = sample_genotype(name, 0)
        assert "stem_stride" not in builtin.to_dict() and builtin.stem_stride == PROFILES[name].stem_stride
    with pytest.raises(GenotypeError, match="profile 'mine' is not built in .* needs its stem_stride"):
        Genotype.from_dict({k: v for k, v in g.to_dict().items() if k != "stem_stride"})
    with pytest.raises(GenotypeError, match="stem_stride must be an integer in 1..4"):
        Genotype.from_dict({**g.to_dict(), "stem_stride": 0})


def test_bundled_genotypes_read_and_write_as_before():
    from importlib import resources

    for name in ("mt-a", "mt-test"):
        config = json.loads(resources.files("menas_zoo.hub").joinpath("bundled", name, "config.json").read_text())
        genotype = Genotype.from_dict(config["genotype"])
        assert genotype.to_dict() == config["genotype"] and genotype.stem_stride == 1


def test_the_one_line_form_keeps_the_stem_stride_and_the_profile():
    """line -> genotype -> line is exact with a stem stride of its own; lines without one read as before."""
    import dataclasses

    from menas_zoo.space import PROFILES

    line = "stem16_s2 / k3_h32_c24_s1_re / k5_h72_c32_s2_se_hs / head256 / profile=mine"
    genotype = Genotype.from_compact(line)
    assert (genotype.profile, genotype.stem_stride) == ("mine", 2) and genotype.to_compact() == line
    assert Genotype.from_compact(genotype.to_compact()) == genotype
    assert Genotype.from_json(genotype.to_json()) == genotype
    for g in (genotype.replace(stem_stride=4), sample_genotype("imagenet", 0).replace(stem_stride=1),
              sample_genotype(dataclasses.replace(PROFILES["tiny"], name="mine", stem_stride=2), 1),
              sample_genotype("small", 2).replace(stem_stride=2)):
        assert Genotype.from_compact(g.to_compact(), in_chans=g.in_chans, resolution=g.resolution,
                                     num_classes=g.num_classes) == g, g.to_compact()
    # what every line said before: no stride and no profile, the small profile's stride 1
    plain = "stem16 / k3_h32_c24_s1_re / head256"
    assert Genotype.from_compact(plain).stem_stride == 1 and Genotype.from_compact(plain).to_compact() == plain
    assert Genotype.from_compact(plain, profile="imagenet").stem_stride == 2
    assert Genotype.from_compact("stem16_s2 / k3_h32_c24_s1_re / head256").to_compact().startswith("stem16_s2 /")
    for bad, message in (("stem16_s9 / k3_h32_c24_s1_re / head256", "stem_stride must be an integer in 1..4"),
                         ("stem16 / k3_h32_c24_s1_re / head256 / profile=mine", "needs its stem_stride"),
                         ("stem16 / k3_h32_c24_s1_re / head256 / profile=a b", "not a plain name"),
                         ("stem16_x / k3_h32_c24_s1_re / head256", "expected 'stem16")):
        with pytest.raises(GenotypeError, match=message):
            Genotype.from_compact(bad)
    with pytest.raises(GenotypeError, match="the line says profile=imagenet, not small"):
        Genotype.from_compact(plain + " / profile=imagenet", profile="small")


def test_overrides_apply_to_json_genotypes_as_to_every_form(tmp_path):
    """in_chans, resolution and num_classes override a JSON genotype (a file, a run folder's genotype.json,
    inline JSON) exactly as they do a reference's or a one-line form's; one that cannot apply is one line."""
    small = reference_genotype("mobilenetv3-small")
    path = tmp_path / "g.json"
    path.write_text(small.to_json())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "genotype.json").write_text(small.to_json())
    overrides = dict(in_chans=1, resolution=28, num_classes=10)
    expected = small.replace(**overrides)
    assert resolve_genotype("mobilenetv3-small", **overrides) == expected
    for ref in (str(path), small.to_json(None), str(tmp_path / "run")):
        assert resolve_genotype(ref, **overrides) == expected
        assert resolve_genotype(ref, resolution=64) == small.replace(resolution=64)
        assert resolve_genotype(ref) == small
        with pytest.raises(GenotypeError, match="^genotype: num_classes must be an integer in 2..100000, got 1$"):
            resolve_genotype(ref, num_classes=1)
