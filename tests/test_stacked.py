"""The stacked-channel ensemble (harness.stacked) against the vmap path and the per-model loop:
the same models, BatchNorm's batch and running statistics included, for masks of different sizes.
The 12x12 images leave VGG-6's last convolution one-pixel maps, so its centre-tap form trains here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conv_data import nested_masks, random_images
from harness import specs, zoo
from harness.data import Dataset
from harness.images import DeviceAugment
from harness.stacked import NotStackable, StackedConv2d, StackedConvNet, stackable
from harness.worker import CannotRebuild, spec_from_config

# 40 training images, masks of 12, 24 and 40 points, batches of 8: 5 steps an epoch, 4 epochs.
N_TRAIN, STEPS = 40, 20
MASK_SIZES = (12, 24, 40)
# VGG-6 on random labels is chaotic at larger rates (a 1e-7 nudge to the weights grows to O(1)
# logit changes within 20 steps at 0.01, whatever the path): 0.002 keeps rounding small.
RECIPES = {"small_cnn": specs.Recipe("stacked-test", epochs=4, batch_size=8, peak_lr=0.05),
           "vgg6": specs.Recipe("stacked-test", epochs=4, batch_size=8, peak_lr=0.002)}


@pytest.fixture(scope="module")
def images() -> Dataset:
    return random_images(N_TRAIN, seed=0)


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    return nested_masks(N_TRAIN, MASK_SIZES, seed=0)


@pytest.fixture(scope="module", params=["small_cnn", "vgg6"])
def trained(request, images, masks):
    """Each path's trained models and arrays (flips and 2-pixel translations on)."""
    model, recipe = request.param, RECIPES[request.param]
    fitted = {path: zoo._fit(model, images, masks, [3, 4, 5], recipe, torch.device("cpu"),
                             DeviceAugment(flip=True, translate=2), progress=False, path=path)
              for path in ("vmap", "stacked", "loop")}
    assert fitted["vmap"].setup.steps_per_epoch * recipe.epochs == STEPS
    return model, fitted, {path: zoo._evaluate(f, images) for path, f in fitted.items()}


@pytest.mark.parametrize("path", ["stacked", "loop"])
def test_margins_match_the_vmap_path_after_20_steps(trained, path):
    model, _, arrays = trained
    for key in ("train_margin", "test_margin", "train_spp", "final_loss"):
        np.testing.assert_allclose(arrays[path][key], arrays["vmap"][key], rtol=0, atol=1e-4,
                                   err_msg=f"{model} {path} {key}")


def test_stacked_margins_match_the_per_model_loop(trained):
    model, _, arrays = trained
    for key in ("train_margin", "test_margin"):
        np.testing.assert_allclose(arrays["stacked"][key], arrays["loop"][key], rtol=0, atol=1e-4, err_msg=key)


def test_weights_and_running_statistics_are_each_models_own(trained):
    model, fitted, _ = trained
    reference = fitted["loop"].state_dicts()
    for path in ("vmap", "stacked"):
        states = fitted[path].state_dicts()
        for k, (state, expected) in enumerate(zip(states, reference)):
            assert state.keys() == expected.keys()
            for name, value in expected.items():
                if name.endswith("num_batches_tracked"):
                    assert int(state[name]) == int(value) == STEPS, name
                else:
                    torch.testing.assert_close(state[name], value, rtol=0, atol=1e-4,
                                               msg=f"{model} {path} model {k} {name}")
    running = [name for name in reference[0] if name.endswith("running_var")]
    assert len(running) == (3 if model == "small_cnn" else 5)


@pytest.mark.parametrize("name", ["small_cnn", "vgg6"])
def test_one_network_computes_each_models_logits(name):
    torch.manual_seed(0)
    models = [zoo.build(name, 10, 3, 12) for _ in range(3)]
    net = StackedConvNet(models)
    x = torch.randn(6, 3, 3, 12, 12)   # (N, K, C, H, W): each model its own images
    for mode in ("train", "eval"):
        for m in (net, *models):
            m.train(mode == "train")
        expected = torch.stack([m(x[:, k]) for k, m in enumerate(models)])
        torch.testing.assert_close(net(x.flatten(1, 2)), expected, rtol=0, atol=1e-5)
    for k, m in enumerate(models):
        state = net.model_state(k, m)
        assert state.keys() == m.state_dict().keys()
        for key, value in m.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("geometry", [dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1, bias=True),
                                      dict(kernel_size=5, padding=4, dilation=2, stride=2), dict(kernel_size=1)],
                         ids=["3x3", "3x3 with bias", "5x5 dilated, strided", "1x1"])
def test_the_centre_tap_product_is_the_grouped_convolution_of_one_pixel_images(geometry):
    torch.manual_seed(0)
    conv = StackedConv2d(3 * 4, 3 * 6, groups=3, **{"bias": False, **geometry}).double()
    x = torch.randn(5, 12, 1, 1, dtype=torch.float64, requires_grad=True)
    assert conv.sees_only_centre_taps(x)
    product, grouped = conv(x), nn.Conv2d.forward(conv, x)
    assert product.shape == grouped.shape == (5, 18, 1, 1)
    torch.testing.assert_close(product, grouped, rtol=0, atol=1e-12)
    upstream = torch.randn_like(grouped)
    for mine, theirs in zip(torch.autograd.grad(product, [x, *conv.parameters()], upstream),
                            torch.autograd.grad(grouped, [x, *conv.parameters()], upstream)):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)


def test_only_one_pixel_images_under_centring_padding_on_a_cpu_take_the_centre_tap_product():
    conv = StackedConv2d(12, 18, 3, padding=1, groups=3)
    assert conv.sees_only_centre_taps(torch.zeros(2, 12, 1, 1))
    assert not conv.sees_only_centre_taps(torch.zeros(2, 12, 2, 2))
    assert not StackedConv2d(12, 18, 3, padding=0, groups=3).sees_only_centre_taps(torch.zeros(2, 12, 1, 1))
    assert not StackedConv2d(12, 18, 3, padding="same", groups=3).sees_only_centre_taps(torch.zeros(2, 12, 1, 1))
    net = StackedConvNet([zoo.build("vgg6", 10, 3, 12) for _ in range(2)])
    seen = []
    for layer in net.body:
        if isinstance(layer, StackedConv2d):
            layer.register_forward_hook(lambda module, inputs, _: seen.append(module.sees_only_centre_taps(inputs[0])))
    net(torch.zeros(4, 6, 12, 12))
    assert seen == [False, False, False, False, True]   # 12-6-3-2-1: the test images train both forms


def test_auto_picks_the_stacked_path_for_conv_nets_only():
    assert [specs.resolve_path(name) for name in ("small_cnn", "vgg6", "vgg_1m", "pixel_mlp", "resnet18_cifar")] == [
        "stacked", "stacked", "stacked", "vmap", "vmap"]
    assert stackable(zoo.build("vgg6", 10, 3, 32)) and not stackable(zoo.build("pixel_mlp", 10, 1, 28))
    with pytest.raises(ValueError, match="does not stack"):
        specs.resolve_path("pixel_mlp", "stacked")
    with pytest.raises(NotStackable, match="Sequential"):
        StackedConvNet([zoo.build("resnet18_cifar", 10, 3, 32)])


def test_the_store_key_names_the_path_unless_it_is_vmap():
    # The stacked path's stored name carries its version: runs stored as "stacked" came from
    # grouped one-pixel convolutions and are not rebuilt as this path's.
    spec = specs.ConvSpec("small_cnn")
    assert spec.config()["path"] == "stacked-2" and spec.path == "stacked"
    assert spec_from_config(spec.config()) == spec
    with pytest.raises(CannotRebuild):
        spec_from_config({**spec.config(), "path": "stacked"})
    assert "path" not in specs.ConvSpec("small_cnn", path="vmap").config()
    assert "path" not in specs.ConvSpec("pixel_mlp").config()
    assert specs.ConvSpec("vgg6", path="loop").config()["path"] == "loop"
    with pytest.raises(ValueError, match="unknown path"):
        specs.ConvSpec(path="fast")
