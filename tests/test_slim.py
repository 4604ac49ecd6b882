"""Slimming: the materialized (physically narrower) ticket computes what the masked dense network does."""

import itertools

import pytest
import torch
from conftest import randomize_bn

from menas_zoo import slim
from menas_zoo.artifact import save_artifact
from menas_zoo.nets import build_model
from menas_zoo.space import Genotype


def one_block_genotype(block: str, stem: int = 16) -> Genotype:
    return Genotype.from_compact(f"stem{stem} / k3_h32_c{stem}_s1_re,{block} / head32")


BLOCK_KINDS = [f"k{k}_h{h}_c{c}_s{s}{se}_{act}"
               for k, (h, c, s), se, act in itertools.product((3, 5, 7), ((40, 16, 1), (24, 24, 2)), ("", "_se"),
                                                              ("re", "hs"))]


@pytest.mark.parametrize("block", BLOCK_KINDS)
def test_materialized_equals_masked_dense(block, real_batch):
    model = randomize_bn(build_model(one_block_genotype(block))).eval()
    masks = slim.channel_masks(model, prune_ratio=0.4, min_channels=8)
    assert all(m.sum() < m.numel() for m in masks.values()), "every block should lose channels"
    slimmed = slim.materialize(model, masks).eval()
    dense = slim.apply_masks(model, masks)
    for x in (torch.randn(5, 1, 28, 28), real_batch[:16]):
        with torch.no_grad():
            torch.testing.assert_close(slimmed(x), dense(x), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in slimmed.parameters()) < sum(p.numel() for p in dense.parameters())


def test_slim_genotype_records_kept_widths_and_keeps_se():
    model = randomize_bn(build_model(one_block_genotype("k5_h40_c16_s1_se_hs")))
    masks = slim.channel_masks(model, 0.5)
    slimmed = slim.materialize(model, masks)
    kept = slim.mask_summary(masks)
    for (_, _, _, block), name in zip(slimmed.genotype.blocks(), ("stages.0.0", "stages.0.1")):
        assert block.hidden == kept[name][0]
    assert slimmed.genotype.stages[0][1].se == 16  # the SE keeps its width (default for 40 hidden channels)
    assert "se16" in slimmed.genotype.to_json()


def test_global_pruning_ratio_and_floor():
    model = randomize_bn(build_model(one_block_genotype("k3_h64_c16_s1_re")))
    bns = slim.hidden_bns(model)
    bns["stages.0.1"].weight.data[:] = 1e-3  # this block would be pruned away without the floor
    masks = slim.channel_masks(model, prune_ratio=0.5, min_channels=8)
    assert int(masks["stages.0.1"].sum()) == 8
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == pytest.approx(total * 0.5, abs=9)


def test_uniform_allocation_prunes_every_block_alike_and_keeps_the_largest_gamma():
    model = randomize_bn(build_model(one_block_genotype("k3_h64_c16_s1_re")))
    bns = slim.hidden_bns(model)
    bns["stages.0.1"].weight.data[:] = 1e-3  # global pruning takes this block first; uniform does not
    glob = slim.channel_masks(model, prune_ratio=0.25, multiple_of=1)
    uniform = slim.channel_masks(model, prune_ratio=0.25, multiple_of=1, allocation="uniform")
    assert {name: int(m.sum()) for name, m in uniform.items()} == {"stages.0.0": 24, "stages.0.1": 48}
    assert int(glob["stages.0.1"].sum()) < 48
    for name, mask in uniform.items():  # within a block, |gamma| still picks the channels
        gamma = bns[name].weight.detach().abs()
        assert gamma[mask].min() >= gamma[~mask].max()
    rounded = slim.channel_masks(model, prune_ratio=0.3, allocation="uniform")
    assert {name: int(m.sum()) for name, m in rounded.items()} == {"stages.0.0": 24, "stages.0.1": 48}
    with pytest.raises(slim.MenasError, match="unknown ticket allocation 'layer'"):
        slim.channel_masks(model, 0.25, allocation="layer")


def test_blocks_without_expand_are_not_prunable():
    genotype = Genotype.from_compact("stem16 / k3_c16_s1_re,k3_h32_c16_s1_re / head32")
    assert list(slim.prunable_blocks(build_model(genotype))) == ["stages.0.1"]


def test_masks_round_trip_through_an_artifact_s_masks_file(tmp_path):
    model = randomize_bn(build_model(one_block_genotype("k3_h48_c16_s1_re")))
    masks = slim.channel_masks(model, 0.3)
    save_artifact(tmp_path / "ticket", slim.materialize(model, masks), parent_genotype=model.genotype, masks=masks)
    loaded = slim.load_masks(tmp_path / "ticket" / "masks.safetensors", model.genotype)
    assert loaded.keys() == masks.keys() and all(torch.equal(loaded[k], masks[k]) for k in masks)


@pytest.mark.parametrize("bad, message", [
    ({"stages.9.9": torch.ones(8, dtype=torch.bool)}, "matches no prunable block"),
    ({"stages.0.1": torch.ones(7, dtype=torch.bool)}, "shape"),
    ({"stages.0.1": torch.zeros(48, dtype=torch.bool)}, "prunes every channel"),
])
def test_bad_masks_are_clear_errors(bad, message):
    model = build_model(one_block_genotype("k3_h48_c16_s1_re"))
    with pytest.raises(slim.MenasError, match=message):
        slim.materialize(model, bad)


def test_corrupt_mask_file(tmp_path):
    path = tmp_path / "masks.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(slim.MenasError, match="cannot read masks"):
        slim.load_masks(path)


def test_kept_counts_round_to_multiples_of_eight():
    model = randomize_bn(build_model(one_block_genotype("k3_h64_c16_s1_re")))
    for ratio in (0.1, 0.3, 0.55):
        masks = slim.channel_masks(model, ratio)
        assert all(int(m.sum()) % 8 == 0 for m in masks.values())
        exact = slim.channel_masks(model, ratio, multiple_of=1)
        for name in masks:  # rounding only adds back the next channels by |gamma|, never swaps kept ones
            assert abs(int(masks[name].sum()) - int(exact[name].sum())) <= 4
            assert (exact[name] & ~masks[name]).sum() == 0 or (masks[name] & ~exact[name]).sum() == 0


def test_top_channels_keeps_the_given_widths_by_gamma():
    model = randomize_bn(build_model(one_block_genotype("k3_h64_c16_s1_re")))
    gamma = slim.hidden_bns(model)["stages.0.1"].weight.detach().abs()
    masks = slim.top_channels(model, {"stages.0.1": 24})
    assert list(masks) == ["stages.0.1"] and int(masks["stages.0.1"].sum()) == 24
    assert gamma[masks["stages.0.1"]].min() >= gamma[~masks["stages.0.1"]].max()  # the 24 largest |gamma|
    with pytest.raises(slim.MenasError, match="no prunable block stages.9.9"):
        slim.top_channels(model, {"stages.9.9": 8})
    with pytest.raises(slim.MenasError, match="cannot keep 65"):
        slim.top_channels(model, {"stages.0.1": 65})
