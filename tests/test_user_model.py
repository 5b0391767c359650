"""One's own model (harness.model_family.ModelFamily): keyed by its source, trained through the
one training path, and trained one model at a time, with a warning saying why, when vmap cannot
hold it."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest
from torch import nn

from harness.data import from_arrays
from harness.ensemble import train_ensemble
from harness.masks import full_plan
from harness.model_family import ModelFamily, Schedule
from harness.store import run_key
from harness.runner import RecordingStore
from harness.specs import Recipe

TINY = Recipe("tiny", epochs=1, batch_size=16, peak_lr=0.05)
FACTORY_MODULE = '''
from torch import nn


def make_model(num_classes, input_shape):
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, {width}), nn.ReLU(),
                         nn.Linear({width}, num_classes))
'''


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(48, 1, 6, 6), dtype=np.uint8)
    y = np.arange(48) % 3
    return from_arrays(x[:36], y[:36], x[36:], y[36:], name="tiny-images", infer_groups=False)


@pytest.fixture
def write_factory(tmp_path, monkeypatch):
    """``write_factory(width)``: (re)writes a module ``own_model`` whose factory differs in one line."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(width: int):
        (tmp_path / "own_model.py").write_text(FACTORY_MODULE.format(width=width))
        if "own_model" in sys.modules:
            return importlib.reload(sys.modules["own_model"]).make_model
        return importlib.import_module("own_model").make_model

    yield write
    sys.modules.pop("own_model", None)


def family_of(factory, **options) -> ModelFamily:
    return ModelFamily(factory, num_classes=3, input_shape=(1, 6, 6), **{"recipe": TINY, **options})


def test_the_key_follows_the_factorys_source_and_the_recipe(write_factory):
    first = family_of(write_factory(16)).config()
    assert family_of(write_factory(16)).config() == first
    changed = family_of(write_factory(17)).config()
    assert changed["source"] != first["source"] and changed["factory"] == first["factory"]
    assert family_of(write_factory(16), recipe=Recipe("tiny", epochs=2, batch_size=16, peak_lr=0.05)).config() != first


def test_the_suites_recipes_key_the_runs_as_before_own_optimizers_existed(write_factory):
    # Pinned before OwnOptimizer was added: a family of the suite's Recipe or of a Schedule keeps its
    # stored runs.
    masks = np.ones((2, 36), dtype=bool)
    factory = write_factory(16)
    assert run_key(family_of(factory).config(), masks) == "bd7bc4eca364cc46"
    assert run_key(family_of(factory, recipe=Schedule(factory, epochs=1, batch_size=16)).config(),
                   masks) == "a3e095524cbe4543"


class Doubled(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def test_the_key_follows_the_source_of_ones_own_layers():
    def with_own_layer(num_classes, input_shape):
        return nn.Sequential(Doubled(2.0), nn.Flatten(), nn.Linear(36, num_classes))

    family = family_of(with_own_layer)
    assert family._identity["classes"] != family_of(lambda c, s: nn.Sequential(nn.Flatten(), nn.Linear(36, c)))._identity["classes"]


def test_changing_one_line_of_a_factory_retrains_only_that_familys_runs(write_factory, tiny_images, tmp_path):
    plan = full_plan(tiny_images.n_train, 2)
    other = family_of(lambda num_classes, input_shape: nn.Sequential(nn.Flatten(), nn.Linear(36, num_classes)),
                      name="other")
    first = RecordingStore(tmp_path / "store")
    for family in (family_of(write_factory(16), name="mine"), other):
        train_ensemble(tiny_images, family, plan, first, progress=False)
    second = RecordingStore(tmp_path / "store")
    for family in (family_of(write_factory(17), name="mine"), other):
        train_ensemble(tiny_images, family, plan, second, progress=False)
    missing = {run.config["spec"]["family"]: count for run, count in second.opened.values()}
    assert missing == {"mine": 2, "other": 0}
    assert "1 run(s) reused" in second.reuse_notes()[0] and "1 run(s) trained" in second.reuse_notes()[0]


class DataDependent(nn.Module):
    """Branches on the value of its input, which vmap cannot batch."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(36, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        if x.mean() > 0:
            x = x * 0.5
        return self.linear(x)


def test_a_model_vmap_cannot_hold_trains_one_at_a_time_and_says_why(tiny_images, tmp_path):
    family = family_of(lambda num_classes, input_shape: DataDependent(num_classes), name="branching")
    with pytest.warns(UserWarning, match=r"branching cannot be vmap'd \(.*\); its models train one after another"):
        ensemble = train_ensemble(tiny_images, family, full_plan(tiny_images.n_train, 2),
                                  RecordingStore(tmp_path / "store"), progress=False)
    assert ensemble.arrays["train_margin"].shape == (2, 36) and np.isfinite(ensemble.arrays["test_margin"]).all()


def test_a_vmappable_model_trains_without_a_warning(tiny_images, tmp_path, write_factory):
    family = family_of(write_factory(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert family.path_for(tiny_images) == "vmap"


def test_ones_own_schedule_sets_the_learning_rates_and_keys_the_runs(tiny_images, tmp_path, write_factory):
    def halving(step, total):
        return 0.05 * 0.5 ** (step / max(1, total))

    schedule = Schedule(halving, epochs=1, batch_size=16)
    assert np.allclose(schedule.learning_rates(4), [0.05 * 0.5 ** (s / 4) for s in range(4)])
    family = family_of(write_factory(8), recipe=schedule)
    assert family.config()["recipe"]["schedule"] and family.config() != family_of(write_factory(8)).config()
    train_ensemble(tiny_images, family, full_plan(tiny_images.n_train, 2), RecordingStore(tmp_path), progress=False)


@pytest.mark.parametrize("shape, classes, words", [
    ((1, 8, 8), 3, "built for 3 classes of (1, 8, 8) images"),
    ((1, 6, 6), 4, "built for 4 classes"),
], ids=["images of another shape are refused", "another number of classes is refused"])
def test_a_family_refuses_data_it_is_not_built_for(tiny_images, shape, classes, words):
    family = ModelFamily(lambda c, s: nn.Linear(2, c), num_classes=classes, input_shape=shape)
    with pytest.raises(ValueError, match=None) as refused:
        family.check(tiny_images)
    assert words in str(refused.value)


def test_a_family_refuses_data_of_the_other_kind():
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    data = from_arrays(x, np.arange(20) % 2, x, np.arange(20) % 2, infer_groups=False)
    with pytest.raises(ValueError, match=r"built for images of shape \(1, 2, 2\); my-data holds torch.float32 features"):
        ModelFamily(lambda c, s: nn.Linear(4, c), num_classes=2, input_shape=(1, 2, 2)).check(data)


def test_a_factory_that_returns_no_module_is_named():
    with pytest.raises(TypeError, match="returned a int, not an nn.Module"):
        ModelFamily(lambda c, s: 3, num_classes=2, input_shape=(1, 2, 2)).build()
