"""One's own training (harness.model_family): one's own optimizer and scheduler, and float
features, through the one training path. An optimizer whose update is elementwise trains the
same models on stacked weights as one by one; any other trains one model after another, with a
warning saying why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from harness.data import from_arrays
from harness.ensemble import train_ensemble
from harness.masks import full_plan, subsampled_plan
from harness.model_family import ModelFamily, OwnOptimizer, train_models
from harness.runner import RecordingStore
from harness.specs import Recipe


@pytest.fixture(scope="module")
def digit_features():
    """scikit-learn's digits as float32 features (64 pixels in [0, 1]), 10 classes."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))[:300]
    train, test = order[:200], order[200:]
    return from_arrays(x[train], digits.target[train], x[test], digits.target[test], name="digit-features",
                       infer_groups=False)


@pytest.fixture(scope="module")
def tiny_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(48, 1, 6, 6), dtype=np.uint8)
    y = np.arange(48) % 3
    return from_arrays(x[:36], y[:36], x[36:], y[36:], name="tiny-images", infer_groups=False)


# No bias before a BatchNorm: its gradient is zero up to rounding, which Adam and RMSprop divide by
# its own size, so the two paths' rounding would grow into visible differences (as between two runs).
def mlp(num_classes, input_shape):
    (features,) = input_shape
    return nn.Sequential(nn.Linear(features, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, num_classes))


def conv(num_classes, input_shape):
    channels, _, _ = input_shape
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def one_cycle(optimizer, total_steps):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=total_steps)


ELEMENTWISE = {
    "SGD, Nesterov, weight decay": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True,
                                                                  weight_decay=1e-3),
    "Adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.05),
    "RMSprop": lambda params: torch.optim.RMSprop(params, lr=0.005, momentum=0.5),
}


@pytest.mark.parametrize("optimizer", list(ELEMENTWISE.values()), ids=list(ELEMENTWISE))
@pytest.mark.parametrize("data, factory, shape", [
    ("digit_features", mlp, (64,)),
    ("tiny_images", conv, (1, 6, 6)),
], ids=["features", "images"])
def test_an_elementwise_optimizer_trains_the_same_models_stacked_as_one_by_one(request, data, factory, shape,
                                                                               optimizer):
    dataset = request.getfixturevalue(data)
    family = ModelFamily(factory, dataset.num_classes, shape, recipe=OwnOptimizer(optimizer, epochs=2, batch_size=16,
                                                                                  scheduler=one_cycle))
    assert family.path_for(dataset) == "vmap"
    plan = subsampled_plan(dataset.n_train, 4, 0.5, seed=0)   # masks of unequal sizes: some batches wrap
    stacked = train_models(family, dataset, plan.masks, [5, 6, 7, 8], path="vmap")
    alone = train_models(family, dataset, plan.masks, [5, 6, 7, 8], path="loop")
    # Rounding only: models of other seeds differ by tenths; zoo's loop-vs-vmap check allows 1e-3 too.
    for name in stacked:
        np.testing.assert_allclose(stacked[name], alone[name], atol=1e-3, rtol=1e-3, err_msg=name)
    assert np.abs(stacked["train_margin"][0] - stacked["train_margin"][1]).max() > 0.05


class LayerwiseSGD(torch.optim.Optimizer):
    """SGD with each tensor's step scaled to a fixed norm (LARS-like): on stacked weights the norm
    would be the K models' together."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] * p.grad / (p.grad.norm() + 1e-8)


def decay_matrices_only(params):
    # A common idiom that groups by shape: on stacked weights every bias is a matrix too.
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=0.01)


@pytest.mark.parametrize("optimizer, words", [
    (lambda params: LayerwiseSGD(params, lr=0.05), "its optimizer, LayerwiseSGD, is none of those checked"),
    (decay_matrices_only, "other parameter groups than one model's"),
], ids=["an optimizer not known to be elementwise", "parameter groups chosen by shape"])
def test_an_optimizer_stacked_weights_would_couple_trains_one_by_one_and_says_why(digit_features, tmp_path,
                                                                                optimizer, words):
    family = ModelFamily(mlp, 10, (64,), recipe=OwnOptimizer(optimizer, epochs=1, batch_size=32), name="coupled")
    with pytest.warns(UserWarning, match="coupled cannot be vmap'd") as warned:
        ensemble = train_ensemble(digit_features, family, full_plan(digit_features.n_train, 2),
                                  RecordingStore(tmp_path), progress=False)
    assert words in str(warned[0].message) and "train one after another" in str(warned[0].message)
    assert np.isfinite(ensemble.arrays["test_margin"]).all()


def test_a_scheduler_that_waits_for_a_metric_is_refused_with_the_reason():
    recipe = OwnOptimizer(lambda params: torch.optim.SGD(params, lr=0.1), epochs=1, batch_size=8,
                          scheduler=lambda optimizer, steps: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))
    with pytest.raises(TypeError, match="without a metric"):
        ModelFamily(mlp, 10, (64,), recipe=recipe).config()


def adam(params):
    return torch.optim.Adam(params, lr=LEARNING_RATE)


LEARNING_RATE = 0.01


def test_ones_own_optimizer_and_schedule_key_the_runs_also_by_what_they_refer_to(monkeypatch):
    def keyed(**options):
        return ModelFamily(mlp, 10, (64,), recipe=OwnOptimizer(**{"optimizer": adam, "epochs": 1, "batch_size": 8,
                                                                   **options})).config()

    first = keyed()
    assert keyed() == first and first["recipe"]["scheduler"] is None
    scheduled = keyed(scheduler=one_cycle)
    assert scheduled["recipe"]["scheduler"] and scheduled["recipe"]["rates"] != first["recipe"]["rates"]
    assert keyed(scheduler=lambda optimizer, steps: torch.optim.lr_scheduler.StepLR(optimizer, 10)) != scheduled
    assert keyed(epochs=2) != first
    monkeypatch.setitem(globals(), "LEARNING_RATE", 0.02)
    assert keyed()["recipe"]["built"] != first["recipe"]["built"], "a value outside the factory's source keys it"


def test_an_mlp_on_float_features_trains_through_the_store_and_learns(digit_features, tmp_path):
    family = ModelFamily(mlp, 10, (64,), recipe=Recipe("features", epochs=10, batch_size=32, peak_lr=0.1),
                         name="digits-mlp")
    plan = full_plan(digit_features.n_train, 4)
    store = RecordingStore(tmp_path)
    ensemble = train_ensemble(digit_features, family, plan, store, progress=False)
    assert (ensemble.arrays["test_margin"] > 0).mean() > 0.8, "10 classes: chance is 0.1"
    again = RecordingStore(tmp_path)
    reused = train_ensemble(digit_features, family, plan, again, progress=False)
    assert "1 run(s) reused" in again.reuse_notes()[0]
    np.testing.assert_array_equal(reused.arrays["train_margin"], ensemble.arrays["train_margin"])
