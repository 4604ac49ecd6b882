"""The Python API: ``create_model`` the way timm's works (other classes or channels, architectures without
weights) and ``list_models`` with a ``pretrained`` filter."""

import pytest
import torch
from conftest import TINY_GENOTYPE, randomize_bn

from menas_zoo import MenasError, create_model, list_models
from menas_zoo.hub.registry import get_entry
from menas_zoo.nets import adapt_model, build_model
from menas_zoo.space import reference_names, resolve_genotype



def test_other_classes_get_a_new_head_and_keep_the_rest():
    model = create_model("mt-test", offline=True)
    five = create_model("mt-test", num_classes=5, offline=True)
    assert five.genotype.num_classes == 5 and five.classifier.out_features == 5 and not five.training
    old, new = model.state_dict(), five.state_dict()
    assert all(torch.equal(old[k], v) for k, v in new.items() if not k.startswith("classifier."))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model.forward_features(x), five.forward_features(x))
    assert five(x).shape == (2, 5)
    assert five.zoo_config["labels"] is None and five.zoo_config["adapted"]["from_num_classes"] == 10
    assert model.zoo_config["labels"] and len(model.zoo_config["labels"]) == 10  # the original is untouched


def test_other_channels_adapt_the_stem_so_grey_images_give_the_same_features():
    model = randomize_bn(build_model(resolve_genotype(TINY_GENOTYPE))).eval()
    rgb = adapt_model(model, in_chans=3)
    assert rgb.genotype.in_chans == 3 and rgb.stem.conv.weight.shape[1] == 3
    grey = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(rgb.forward_features(grey.expand(-1, 3, -1, -1)), model.forward_features(grey))
    back = adapt_model(rgb, in_chans=1)  # summed back to one channel: the original stem
    torch.testing.assert_close(back.stem.conv.weight, model.stem.conv.weight)
    assert torch.equal(rgb.classifier.weight, model.classifier.weight)  # same classes: head kept


def test_other_channels_through_create_model_follow_the_input_spec():
    model = create_model("mt-test", in_chans=3, offline=True)
    spec = model.zoo_config["input_spec"]
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 10)
    assert spec["in_chans"] == 3 and len(spec["mean"]) == 3 and len(set(spec["mean"])) == 1
    assert model.zoo_config["labels"]  # same classes: labels still apply


def test_an_architecture_without_weights_builds_untrained_and_says_so_otherwise():
    model = create_model("mobilenetv3-small", pretrained=False)
    assert model.genotype.num_classes == 1000 and model.zoo_config is None
    assert sum(p.numel() for p in model.parameters()) == 2_542_856  # torchvision's count
    small = create_model("mobilenetv3-small", pretrained=False, num_classes=10, in_chans=1)
    assert (small.genotype.num_classes, small.genotype.in_chans) == (10, 1)
    assert create_model(TINY_GENOTYPE, pretrained=False, num_classes=3).classifier.out_features == 3
    with pytest.raises(MenasError, match=r"^'mobilenetv3-small' is an architecture without weights: pass "
                                         r"pretrained=False to build it untrained \(models with weights: "):
        create_model("mobilenetv3-small")


def test_pretrained_false_for_a_zoo_model_is_its_architecture_with_fresh_weights():
    model = create_model("mt-test", pretrained=False, num_classes=4, offline=True)
    trained = create_model("mt-test", offline=True)
    assert model.genotype.num_classes == 4 and model.genotype.stages == trained.genotype.stages
    assert not torch.equal(model.stem.conv.weight, trained.stem.conv.weight)


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"num_classes": -3}, {"in_chans": 0}, {"num_classes": 2.5},
                                    {"num_classes": True}])
def test_a_non_positive_size_is_one_clear_error(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(MenasError, match=rf"^{name} must be a positive integer, got {value!r}$"):
        create_model("mt-test", offline=True, **kwargs)


def test_list_models_filters_by_weights():
    with_weights, without = list_models(pretrained=True), list_models(pretrained=False)
    assert without == reference_names() and not set(with_weights) & set(without)
    assert all(not get_entry(name).fixture for name in with_weights)
    assert list_models() == sorted(with_weights + without)
    assert list_models("mobilenetv3-*") == ["mobilenetv3-large", "mobilenetv3-small"]
    assert list_models("mobilenetv3-*", pretrained=True) == []
    assert "mt-test" in list_models(pretrained=True, include_fixtures=True) and "mt-test" not in list_models()
