"""Model builders, recipes and vectorised ensemble training on tiny random images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness import specs, zoo
from harness.data import Dataset, digits
from harness.images import DeviceAugment, channel_mean_std, normalize


@pytest.mark.parametrize("name, target", [
    ("vgg_0_5m", 0.5e6), ("vgg_1m", 1e6), ("vgg_8m", 8e6), ("vgg_20m", 20e6),
])
def test_vgg_presets_have_their_named_size(name, target):
    count = sum(p.numel() for p in zoo.build(name, num_classes=10, in_channels=3, image_size=32).parameters())
    assert abs(count - target) <= 0.15 * target, f"{name}: {count:,} parameters"


def test_vgg6_follows_the_appendix():
    model = zoo.build("vgg6", 10, 3, 32)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 64, 64, 512]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 5


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_model_classifies_a_cifar_batch(name):
    torch.manual_seed(0)
    model = zoo.build(name, num_classes=7, in_channels=3, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", ["small_cnn", "vgg6", "resnet18_cifar", "vit_tiny"])
def test_models_take_single_channel_28x28_images(name):
    model = zoo.build(name, num_classes=10, in_channels=1, image_size=28).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_build_rejects_unknown_models_and_bad_patch_sizes():
    with pytest.raises(ValueError, match="vgg6"):
        zoo.build("alexnet", 10, 3, 32)
    with pytest.raises(ValueError, match="divisible"):
        zoo.vit(10, 3, image_size=30, patch_size=4)


def test_recipes_and_triangular_schedule():
    paper = specs.RECIPES["paper"]
    assert (paper.epochs, paper.batch_size, paper.peak_lr, paper.momentum, paper.weight_decay) == (
        100, 512, 0.4, 0.9, 1e-5)
    assert specs.RECIPES["smoke"].epochs == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.epochs = 1
    rates = paper.learning_rates(100)
    assert rates.argmax() == 19 and rates.max() == pytest.approx(0.4)
    assert (rates > 0).all() and rates[-1] < 0.01
    assert (np.diff(rates[:20]) > 0).all() and (np.diff(rates[19:]) < 0).all()
    with pytest.raises(ValueError, match="peak_at"):
        specs.Recipe("bad", epochs=1, batch_size=8, peak_lr=0.1, peak_at=1.5)


TINY_RECIPE = specs.Recipe("test", epochs=1, batch_size=16, peak_lr=0.1)


@pytest.fixture(scope="module")
def random_images() -> Dataset:
    generator = torch.Generator().manual_seed(0)
    return Dataset(
        name="random", num_classes=10,
        x_train=torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8, generator=generator),
        y_train=torch.randint(0, 10, (60,), generator=generator),
        x_test=torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8, generator=generator),
        y_test=torch.randint(0, 10, (20,), generator=generator))


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    return np.random.default_rng(0).random((3, 60)) < 0.7


def train(dataset, masks, seeds, **kwargs):
    return zoo.train_conv_ensemble("small_cnn", dataset, masks, seeds, TINY_RECIPE,
                                   augment=DeviceAugment(flip=True, translate=2),
                                   progress=False, **kwargs)


def test_ensemble_returns_margins_spp_and_losses(random_images, masks):
    out = train(random_images, masks, [1, 2, 3])
    shapes = {"train_margin": (3, 60), "test_margin": (3, 20), "train_spp": (3, 60),
              "final_loss": (3,)}
    assert {key: value.shape for key, value in out.items()} == shapes
    for value in out.values():
        assert value.dtype == np.float32 and np.isfinite(value).all()
    assert ((out["train_spp"] >= 0.1 - 1e-6) & (out["train_spp"] <= 1)).all()


def test_ensemble_is_reproducible_per_seed(random_images, masks):
    first = train(random_images, masks, [1, 2, 3])
    again = train(random_images, masks, [1, 2, 3])
    other = train(random_images, masks, [1, 2, 4])
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["train_margin"][2], other["train_margin"][2])
    # Models 0 and 1 kept their seeds and masks: what model 2 does must not touch them.
    np.testing.assert_allclose(first["train_margin"][:2], other["train_margin"][:2], atol=1e-5)


def train_one_model_plainly(dataset, masks, k, seeds, recipe):
    """Model k of an ensemble trained as an ordinary module on its own mask: the reference.

    Mirrors train_conv_ensemble's documented procedure (seed streams, per-epoch permutation
    wrapped to ceil(max_k m_k / B) steps, triangular learning rate) without vmap.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zoo._stream_seed(seeds[k], 0))
        model = zoo.build("small_cnn", dataset.num_classes, 1, 28)
    generator = torch.Generator().manual_seed(zoo._stream_seed(seeds[k], 1))
    mean, std = channel_mean_std(dataset.x_train)
    mine = torch.from_numpy(np.flatnonzero(masks[k]))
    steps = -(-masks.sum(axis=1).max() // recipe.batch_size)
    rates = recipe.learning_rates(recipe.epochs * steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    for epoch in range(recipe.epochs):
        order = mine[torch.randperm(len(mine), generator=generator)]
        order = order[torch.arange(steps * recipe.batch_size) % len(mine)]
        for step in range(steps):
            batch = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            optimizer.param_groups[0]["lr"] = float(rates[epoch * steps + step])
            loss = torch.nn.functional.cross_entropy(
                model(normalize(dataset.x_train[batch], mean, std)), dataset.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits = model.eval()(normalize(dataset.x_train, mean, std))
    true = logits.gather(1, dataset.y_train[:, None]).squeeze(1)
    return (true - logits.scatter(1, dataset.y_train[:, None], float("-inf")).amax(1)).numpy()


def test_each_model_trains_as_if_alone_on_its_mask(random_images, masks):
    # Shows the vectorised models are independent and that model k sees only its mask:
    # a model trained plainly on masks[k] alone ends with the same margins.
    recipe = specs.Recipe("two", epochs=2, batch_size=16, peak_lr=0.05)
    out = zoo.train_conv_ensemble("small_cnn", random_images, masks, [4, 5, 6], recipe,
                                  progress=False)
    for k in (0, 2):
        reference = train_one_model_plainly(random_images, masks, k, [4, 5, 6], recipe)
        np.testing.assert_allclose(out["train_margin"][k], reference, rtol=1e-4, atol=1e-5)


def test_the_loop_path_trains_the_same_models_one_by_one(random_images, masks):
    # Same seeds, batch orders, augmentations and recipe: the per-model loop ends where vmap does,
    # up to rounding, which a step at rate 0.1 on random labels grows to ~1e-4 (tests/test_stacked.py
    # holds every path to 1e-4 at calmer rates).
    vectorised = train(random_images, masks, [1, 2, 3], path="vmap")
    looped = train(random_images, masks, [1, 2, 3], path="loop")
    for key in vectorised:
        np.testing.assert_allclose(looped[key], vectorised[key], rtol=1e-3, atol=1e-3, err_msg=key)


def test_the_loop_path_takes_a_builder_of_ones_own(random_images, masks):
    def tiny(num_classes, in_channels, image_size):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, num_classes))

    out = zoo.train_conv_ensemble(tiny, random_images, masks[:2], [1, 2], TINY_RECIPE, progress=False, path="loop")
    assert out["train_margin"].shape == (2, 60) and np.isfinite(out["train_margin"]).all()
    assert specs.resolve_path(tiny) == "vmap" and specs.resolve_path("pixel_mlp") == "vmap"
    with pytest.raises(ValueError, match="unknown path"):
        specs.resolve_path("small_cnn", "fast")


def test_ensemble_rejects_bad_masks_seeds_and_data(random_images, masks):
    empty_row = masks.copy()
    empty_row[1] = False
    with pytest.raises(ValueError, match=r"models \[1\] have an empty training mask"):
        train(random_images, empty_row, [1, 2, 3])
    with pytest.raises(ValueError, match="bool"):
        train(random_images, masks.astype(int), [1, 2, 3])
    with pytest.raises(ValueError, match="one seed per model"):
        train(random_images, masks, [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        train(random_images, masks, [1, -2, 3])
    features = digits()
    with pytest.raises(ValueError, match="images"):
        train(features, np.ones((1, features.n_train), bool), [0])


def test_divergence_names_model_seed_and_epoch(random_images, masks):
    exploding = specs.Recipe("exploding", epochs=1, batch_size=16, peak_lr=1e30)
    with pytest.raises(zoo.TrainingDiverged, match=r"small_cnn \(seed \d.*epoch 1"):
        zoo.train_conv_ensemble("small_cnn", random_images, masks, [1, 2, 3], exploding,
                                progress=False)


def test_conv_spec_trains_through_the_store_once(random_images, tmp_path, monkeypatch):
    from harness.ensemble import train_ensemble
    from harness.masks import subsampled_plan
    from harness.store import Store

    monkeypatch.setitem(specs.RECIPES, "test", TINY_RECIPE)
    spec = specs.ConvSpec("small_cnn", "test", flip=True, translate=1, models_per_pass=2)
    plan = subsampled_plan(random_images.n_train, 4, 0.7)
    first = train_ensemble(random_images, spec, plan, Store(tmp_path), progress=False)
    again = train_ensemble(random_images, spec, plan, Store(tmp_path), progress=False)
    assert (first.models_trained, again.models_trained) == (4, 0)
    assert first.arrays["train_margin"].shape == (4, 60) and first.arrays["test_margin"].shape == (4, 20)
    direct = zoo.train_conv_ensemble("small_cnn", random_images, plan.masks, plan.seeds(0),
                                     TINY_RECIPE, augment=spec.augment, progress=False)
    np.testing.assert_allclose(again.arrays["train_margin"], direct["train_margin"], atol=1e-5)
    assert spec.config()["family"] == "cnn" and spec.config()["recipe_values"]["batch_size"] == 16
    assert specs.ConvSpec().augment is None


def test_conv_spec_rejects_unknown_names():
    with pytest.raises(ValueError, match="small_cnn"):
        specs.ConvSpec(model="alexnet")
    with pytest.raises(ValueError, match="paper"):
        specs.ConvSpec(recipe="fast")
    with pytest.raises(ValueError, match="translate"):
        specs.ConvSpec(translate=-1)


def test_a_recipe_builds_sgd_at_each_steps_learning_rate_to_the_bit():
    recipe = specs.Recipe("steps", epochs=3, batch_size=8, peak_lr=0.3)
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer, scheduler = recipe.build([weight], 7)
    used = []
    for _ in range(7):
        used.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    assert used == recipe.learning_rates(7).tolist()


def test_conv_specs_keep_their_store_keys():
    """The specs of the three profiles and two others, pinned: their runs stay in the store."""
    from harness.store import run_key

    masks = np.zeros((2, 3), dtype=bool)
    masks[0, 1] = True
    keys = [run_key(spec.config(), masks) for spec in (
        specs.ConvSpec("small_cnn", "smoke", models_per_pass=4), specs.ConvSpec("small_cnn", "cpu_short", models_per_pass=8),
        specs.ConvSpec("vgg6", "paper", flip=True, translate=2, models_per_pass=16), specs.ConvSpec("pixel_mlp", "smoke"),
        specs.ConvSpec("vgg6", "paper", path="loop"))]
    assert keys == ["b27257a6d0d0f31c", "bc065b3a05037d86", "b3f350d1bb39a1f2", "018ed55adc12d91f", "84be1dd0077683dc"]


def test_the_named_models_are_the_models_zoo_builds():
    assert tuple(zoo.MODELS) == specs.MODEL_NAMES


def test_reading_the_profiles_imports_no_conv_trainer():
    import subprocess
    import sys

    probe = "import sys, harness.profiles; print('harness.zoo' in sys.modules, 'harness.stacked' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_penultimate_features_embed_each_batch_reproducibly(random_images):
    inputs = (random_images.x_train, random_images.x_test)
    train, test = zoo.penultimate_features("small_cnn", random_images, inputs, TINY_RECIPE, seed=3)
    assert train.shape == (60, 64) and test.shape == (20, 64) and train.dtype == np.float32
    again, _ = zoo.penultimate_features("small_cnn", random_images, inputs, TINY_RECIPE, seed=3)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError, match="Sequential"):
        zoo.penultimate_features("resnet18_cifar", random_images, inputs, TINY_RECIPE)
    with pytest.raises(ValueError, match="uint8"):
        zoo.penultimate_features("small_cnn", random_images, (inputs[0].float(),), TINY_RECIPE)


def test_paper_profile_describes_imn25_studies():
    from harness import profiles

    paper = profiles.PAPER
    assert (paper.cnn.model, paper.cnn.recipe) == ("vgg6", "paper")
    assert (paper.loo_models_per_target, paper.subsampled_models) == (100, 4000)
    assert abs(paper.loo_targets_per_bin * len(profiles.SIZE_BINS) - 200) <= 3
