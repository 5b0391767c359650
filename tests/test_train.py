"""Both model families and the one training path: exact closed-form LOO, determinism,
resumable ensembles, divergence errors, bad inputs and an MLP sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.masks import full_plan, subsampled_plan
from harness.store import Store
from harness.train import (MLPSpec, RidgeSpec, TrainingDiverged, _FusedOptimizer, _lower_gram, _StackedMLPs, margins,
                           median_distance)

# 3 classes x (12 + 4 + 2 + 2 singletons) = 60 training points, 8 features.
SMALL = SubpopulationSpec(num_classes=3, dim=8, subpops_per_class=3, largest=12, singletons_per_class=2, seed=1)
TINY_MLP = MLPSpec(width=16, epochs=3, batch_size=16, models_per_pass=2)
TINY_RIDGE = RidgeSpec(features=32, models_per_pass=2)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: extra OpenMP threads only add synchronisation, and on a shared
    2-core machine they spin against other processes (measured 15x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    return synthetic(SMALL)


def partial_masks(n: int) -> np.ndarray:
    """Two draws: one on every point, one without every fifth point."""
    masks = np.ones((2, n), dtype=bool)
    masks[1, ::5] = False
    return masks


# --- the MLP's hand-written backpropagation ----------------------------------------------------

@pytest.mark.parametrize("depth", [0, 1, 2], ids=lambda d: f"{d} hidden layers")
def test_stacked_mlp_gradients_equal_autograd_of_the_summed_mean_cross_entropies(depth):
    models, features, width, classes, batch = 3, 5, 7, 4, 6
    dims = [features] + [width] * depth + [classes]
    gen = torch.Generator().manual_seed(depth)
    size = sum(models * (a * b + b) for a, b in zip(dims[:-1], dims[1:]))
    params = torch.randn(size, generator=gen, dtype=torch.float64)
    params.grad = torch.zeros_like(params)
    stacked = _StackedMLPs(params, models, dims, batch)
    inputs = torch.randn(models, features, batch, generator=gen, dtype=torch.float64)
    labels = torch.randint(classes, (models, batch), generator=gen)
    targets = torch.nn.functional.one_hot(labels, classes).transpose(1, 2).double() / -batch
    logits = stacked.backpropagate(inputs, targets)

    # The layout harness.train._layers documents: each layer's weight, then its bias.
    reference = params.detach().clone().requires_grad_()
    h, start = inputs, 0
    for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        weight = reference[start:start + models * fan_out * fan_in].view(models, fan_out, fan_in)
        start += weight.numel()
        bias = reference[start:start + models * fan_out].view(models, fan_out, 1)
        start += bias.numel()
        h = weight @ h + bias
        if layer < depth:
            h = h.relu()
    loss = sum(torch.nn.functional.cross_entropy(h[k].T, labels[k]) for k in range(models))
    loss.backward()
    torch.testing.assert_close(logits, h.detach())
    torch.testing.assert_close(params.grad, reference.grad)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"], ids=lambda name: f"{name} called directly")
def test_the_fused_update_called_directly_equals_torch_optim_bit_for_bit(optimizer):
    spec = MLPSpec(optimizer=optimizer, lr=0.3, momentum=0.8, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(1000, generator=gen)
    ours, theirs = start.clone(), start.clone()
    ours.grad, theirs.grad = torch.empty_like(start), torch.empty_like(start)
    their_lr = torch.tensor(spec.lr)  # a tensor set in place, as _FusedOptimizer keeps its own
    direct = _FusedOptimizer(spec, ours)
    reference = (torch.optim.SGD([theirs], lr=their_lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                                 nesterov=True, fused=True) if optimizer == "sgd" else
                 torch.optim.AdamW([theirs], lr=their_lr, weight_decay=spec.weight_decay, fused=True))
    for step in range(5):
        gradient = torch.randn(1000, generator=gen)
        ours.grad.copy_(gradient)
        theirs.grad.copy_(gradient)
        their_lr.fill_(spec.lr / (step + 1))
        direct.step(spec.lr / (step + 1))
        reference.step()
        assert torch.equal(ours, theirs), f"step {step}"


# --- the ridge's Gram matrix ------------------------------------------------------------------

def test_the_ridge_gram_is_right_below_the_diagonal_and_cholesky_reads_nothing_above():
    a = torch.randn(50, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lower = _lower_gram(a, out=torch.full((12, 12), float("nan"), dtype=torch.float64), blocks=3)
    full = a.T @ a
    torch.testing.assert_close(lower.tril(), full.tril())
    # The fit relies on this of torch: the factor of a matrix with NaN above its diagonal
    # blocks is the factor of the whole matrix.
    factor, info = torch.linalg.cholesky_ex(lower)
    assert info == 0
    torch.testing.assert_close(factor, torch.linalg.cholesky(full))


# --- exact closed-form leave-one-out ---------------------------------------------------------

def test_closed_form_loo_equals_refitting_without_each_point(small):
    """The refit on mask minus i uses the same draw (seed) and the same length scale,
    because the bandwidth is relative to the median distance over *all* training points,
    not the masked ones; so the hat-matrix identity must reproduce it to rounding."""
    spec = RidgeSpec(dtype="float64", features=64)
    masks, seeds = partial_masks(small.n_train), np.array([3, 11])
    full = spec.train(small, masks, seeds)
    refit_margin = np.full(masks.shape, np.nan)
    for k in range(len(masks)):
        for i in np.flatnonzero(masks[k]):
            without_i = masks[k:k + 1].copy()
            without_i[0, i] = False
            refit_margin[k, i] = spec.train(small, without_i, seeds[k:k + 1])["train_margin"][0, i]
    assert np.array_equal(np.isnan(full["loo_margin"]), ~masks), "LOO margin must be NaN exactly off-mask"
    np.testing.assert_allclose(full["loo_margin"][masks], refit_margin[masks], rtol=1e-6, atol=1e-6)
    # Not vacuous: leaving a point out changes its margin, and flips some predictions.
    assert np.abs(full["loo_margin"][masks] - full["train_margin"][masks]).min() > 1e-6
    assert ((full["loo_margin"][masks] > 0) != (full["train_margin"][masks] > 0)).any()


def test_median_distance_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert median_distance(points) == 4.0  # pairwise distances 3, 4, 5


def test_margins_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    assert margins(logits, torch.tensor([0, 2, 1])).tolist() == [1.0, -2.0, 0.0]
    # Batched over models: (K, n, C) logits with one label vector.
    stacked = margins(torch.stack([logits, -logits]), torch.tensor([0, 2, 1]))
    assert stacked.shape == (2, 3) and stacked[1].tolist() == [-2.0, -1.0, -1.0]


# --- outputs and determinism ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_outputs_follow_the_schema(small, spec):
    out = spec.train(small, partial_masks(small.n_train), np.array([1, 2]))
    assert set(out) == set(spec.schema(small))
    for name, (shape, dtype) in spec.schema(small).items():
        assert out[name].shape == (2, *shape) and out[name].dtype == np.dtype(dtype), name
    assert np.isfinite(out["train_margin"]).all() and np.isfinite(out["test_margin"]).all()
    assert ((out["train_spp"] >= 1 / small.num_classes - 1e-6) & (out["train_spp"] <= 1)).all()


@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_a_seed_gives_bit_identical_results_and_other_seeds_differ(small, spec):
    masks = partial_masks(small.n_train)
    first = spec.train(small, masks, np.array([5, 6]))
    again = spec.train(small, masks, np.array([5, 6]))
    other = spec.train(small, masks, np.array([7, 8]))
    for name in first:
        assert np.array_equal(first[name], again[name], equal_nan=True), name
    assert not np.array_equal(first["train_margin"], other["train_margin"])
    assert not np.array_equal(first["train_margin"][0], first["train_margin"][1])


# --- the store-backed training path --------------------------------------------------------

@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_train_ensemble_twice_trains_nothing_the_second_time(small, spec, tmp_path):
    plan = subsampled_plan(small.n_train, 5, 0.6)
    first = train_ensemble(small, spec, plan, Store(tmp_path), progress=False)
    again = train_ensemble(small, spec, plan, Store(tmp_path), progress=False)
    assert first.models_trained == 5 and again.models_trained == 0
    assert first.key == again.key
    for name in first.arrays:
        assert np.array_equal(first.arrays[name], again.arrays[name], equal_nan=True), name


@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_an_interrupted_fill_resumes_to_the_uninterrupted_result(small, spec, tmp_path, monkeypatch):
    """The family's trainer crashes after its first chunk (rows 0-1 of 0-1, 2-3, 4); the rerun
    trains the other three models and must match a run that never crashed, bit for bit."""
    plan = subsampled_plan(small.n_train, 5, 0.6)
    train_once = type(spec).train
    calls = []

    def crash_after_first_chunk(self, *args, **kwargs):
        if calls:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return train_once(self, *args, **kwargs)

    monkeypatch.setattr(type(spec), "train", crash_after_first_chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_ensemble(small, spec, plan, Store(tmp_path / "crashed"), progress=False)
    monkeypatch.undo()
    (run,) = Store(tmp_path / "crashed").runs()
    assert run.missing().tolist() == [2, 3, 4]

    resumed = train_ensemble(small, spec, plan, Store(tmp_path / "crashed"), progress=False)
    fresh = train_ensemble(small, spec, plan, Store(tmp_path / "fresh"), progress=False)
    assert resumed.models_trained == 3 and fresh.models_trained == 5
    for name in fresh.arrays:
        assert np.array_equal(resumed.arrays[name], fresh.arrays[name], equal_nan=True), name


@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_passes_trained_side_by_side_give_the_one_thread_results(small, spec, tmp_path):
    """With N torch threads the training path trains N passes at once, one thread each."""
    plan = subsampled_plan(small.n_train, 8, 0.7, seed=3)
    one = train_ensemble(small, spec, plan, Store(tmp_path / "one"), progress=False)
    torch.set_num_threads(3)
    try:
        side_by_side = train_ensemble(small, spec, plan, Store(tmp_path / "three"), progress=False)
        assert torch.get_num_threads() == 3  # put back after training
    finally:
        torch.set_num_threads(1)  # this module's setting (one_torch_thread)
    for name in spec.schema(small):
        np.testing.assert_array_equal(side_by_side.arrays[name], one.arrays[name])


def test_train_ensemble_rejects_a_plan_of_another_size(small, tmp_path):
    with pytest.raises(ValueError, match=f"plan covers 10 points, synthetic has {small.n_train}"):
        train_ensemble(small, TINY_RIDGE, full_plan(10, 2), Store(tmp_path), progress=False)


# --- divergence ----------------------------------------------------------------------------

def test_a_nan_loss_stops_with_an_error_naming_spec_data_and_seed(small):
    spec = MLPSpec(width=16, lr=1e6, epochs=10, batch_size=16)
    with pytest.raises(TrainingDiverged) as error:
        spec.train(small, np.ones((1, small.n_train), dtype=bool), np.array([123]))
    message = str(error.value)
    assert "lr=1000000.0" in message and "MLPSpec(" in message
    assert "on synthetic" in message and "(seed 123)" in message
    assert "lower lr" in message


def test_a_blow_up_in_the_last_update_is_also_caught(small):
    """The loss is computed before each update, so a blow-up in the very last one shows only in
    the final outputs; NaN margins must not reach the estimators as 'misclassified'."""
    # One step per epoch; the triangular schedule gives lr 0 at step 0 and the full lr at step 1.
    spec = MLPSpec(width=16, lr=1e30, epochs=2, batch_size=small.n_train)
    with pytest.raises(TrainingDiverged, match=r"\(seed 0\).*after the last update"):
        spec.train(small, np.ones((1, small.n_train), dtype=bool), np.array([0]))


# --- bad inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [TINY_MLP, TINY_RIDGE], ids=["mlp", "ridge"])
def test_bad_masks_and_seeds_are_rejected(small, spec):
    n = small.n_train
    good = np.ones((2, n), dtype=bool)
    with pytest.raises(ValueError, match=rf"bool array of shape \(K, {n}\) \(models x points\), got int64"):
        spec.train(small, good.astype(np.int64), np.array([1, 2]))
    with pytest.raises(ValueError, match=rf"bool array of shape \(K, {n}\)"):
        spec.train(small, np.ones((2, n + 1), dtype=bool), np.array([1, 2]))
    with pytest.raises(ValueError, match=rf"bool array of shape \(K, {n}\)"):
        spec.train(small, good[0], np.array([1]))
    with pytest.raises(ValueError, match="non-empty"):
        spec.train(small, np.ones((0, n), dtype=bool), np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="2 masks but 3 seeds"):
        spec.train(small, good, np.array([1, 2, 3]))
    empty = good.copy()
    empty[1] = False
    with pytest.raises(ValueError, match=r"models \[1\] have an empty training mask"):
        spec.train(small, empty, np.array([1, 2]))


@pytest.mark.parametrize("make, message", [
    (lambda: MLPSpec(optimizer="lbfgs"), "optimizer must be 'sgd' or 'adam'"),
    (lambda: MLPSpec(width=0), "width, epochs and batch_size must be >= 1"),
    (lambda: MLPSpec(epochs=0), "width, epochs and batch_size must be >= 1"),
    (lambda: MLPSpec(depth=-1), "depth >= 0"),
    (lambda: MLPSpec(momentum=0.0), "Nesterov momentum, which needs momentum > 0"),
    (lambda: RidgeSpec(ridge=0.0), "ridge and bandwidth > 0"),
    (lambda: RidgeSpec(bandwidth=-1.0), "ridge and bandwidth > 0"),
    (lambda: RidgeSpec(features=0), "features must be >= 1"),
    (lambda: RidgeSpec(dtype="float16"), "dtype must be 'float32' or 'float64'"),
])
def test_invalid_specs_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- MLP sanity ----------------------------------------------------------------------------

def test_mlp_ensemble_fits_its_training_points_and_generalises_on_easy_data(tmp_path):
    """Well separated clusters (centre distance ~ 3 sqrt(2 * 10) = 13, cluster radius ~ 0.3 sqrt(10) = 1)
    of at least 4 training points each. At r = 0.75 a model misses all 4 points of a cluster
    with probability about (1/4)^4, so nearly every test point's cluster was seen: each model
    should be near 100 % on test. We assert >= 0.8 for every model and a mean >= 0.9, far above
    chance (1/3), so only a broken trainer (wrong labels, masks or batches) fails it."""
    data = synthetic(SubpopulationSpec(num_classes=3, dim=10, subpops_per_class=3, largest=20,
                                       singletons_per_class=0, separation=3.0, spread=0.3, seed=0))
    spec = MLPSpec(width=32, epochs=10, batch_size=16, lr=0.1)
    ensemble = train_ensemble(data, spec, subsampled_plan(data.n_train, 4, 0.75), Store(tmp_path), progress=False)
    assert ensemble.n_models == 4
    assert (ensemble.train_accuracy() == 1.0).all()
    test_accuracy = ensemble.test_accuracy()
    assert (test_accuracy >= 0.8).all() and test_accuracy.mean() >= 0.9, test_accuracy
    assert (ensemble.arrays["final_loss"] < 0.1).all()


def test_mlp_final_loss_is_the_mean_batch_loss_of_its_last_epoch():
    """With a learning rate too small to move the weights every batch's loss is the trained
    model's, so over an epoch that visits each point once their mean is the mean cross-entropy
    on the training points: for two classes, the mean of softplus(-margin)."""
    data = synthetic(SubpopulationSpec(num_classes=2, dim=8, subpops_per_class=3, largest=12, singletons_per_class=2,
                                       seed=1))
    assert data.n_train % 10 == 0
    spec = MLPSpec(width=16, epochs=2, batch_size=10, lr=1e-12, weight_decay=0.0)
    out = spec.train(data, np.ones((2, data.n_train), dtype=bool), np.array([3, 4]))
    mean_cross_entropy = torch.nn.functional.softplus(-torch.from_numpy(out["train_margin"]).double()).mean(1)
    np.testing.assert_allclose(out["final_loss"], mean_cross_entropy.numpy(), rtol=1e-5)
