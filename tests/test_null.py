"""Relabelled null: appended points with wrong labels, the rest untouched, and its quantile threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import UNKNOWN_GROUP, SubpopulationSpec, digits, synthetic
from harness.null import with_relabelled_null


@pytest.fixture(scope="module")
def noisy():
    return synthetic(SubpopulationSpec(num_classes=3, dim=5, subpops_per_class=4, largest=12,
                                       singletons_per_class=2, label_noise=0.1))


def test_null_points_are_test_inputs_with_a_wrong_label_appended_after_the_training_points(noisy):
    null = with_relabelled_null(noisy, count=7, seed=1)
    data, n = null.dataset, noisy.n_train
    assert data.n_train == n + 7 and null.is_null.sum() == 7
    assert np.array_equal(null.null_points, np.arange(n, n + 7))
    assert np.array_equal(null.original_points, np.arange(n))
    assert torch.equal(data.x_train[n:], noisy.x_test[torch.from_numpy(null.source_test_points)])
    assert (data.y_train[n:].numpy() != noisy.y_test.numpy()[null.source_test_points]).all()
    assert data.mislabeled_train[n:].all() and (data.group_train[n:] == UNKNOWN_GROUP).all()


def test_the_original_points_keep_their_inputs_labels_groups_and_sizes(noisy):
    data = with_relabelled_null(noisy, count=5).dataset
    n = noisy.n_train
    assert torch.equal(data.x_train[:n], noisy.x_train) and torch.equal(data.y_train[:n], noisy.y_train)
    assert np.array_equal(data.mislabeled_train[:n], noisy.mislabeled_train)
    assert np.array_equal(data.group_size_train[:n], noisy.group_size_train)


def test_the_null_sources_leave_the_test_split(noisy):
    null = with_relabelled_null(noisy, count=6, seed=2)
    data = null.dataset
    assert data.n_test == noisy.n_test - 6 and len(data.group_test) == data.n_test
    kept = np.setdiff1d(np.arange(noisy.n_test), null.source_test_points)
    assert torch.equal(data.x_test, noisy.x_test[torch.from_numpy(kept)])


def test_wrong_labels_cover_every_other_class_and_depend_only_on_the_seed(noisy):
    a = with_relabelled_null(noisy, count=noisy.n_test, seed=3)
    b = with_relabelled_null(noisy, count=noisy.n_test, seed=3)
    assert a.dataset.fingerprint == b.dataset.fingerprint
    assert a.dataset.fingerprint != with_relabelled_null(noisy, count=noisy.n_test, seed=4).dataset.fingerprint
    shift = (a.dataset.y_train[noisy.n_train:].numpy() - noisy.y_test.numpy()[a.source_test_points]) % 3
    assert set(shift.tolist()) == {1, 2}


def test_data_without_groups_stay_without_groups():
    data = digits()
    null = with_relabelled_null(data, count=4)
    assert null.dataset.group_train is None and null.dataset.mislabeled_train.sum() == 4


def test_threshold_is_the_quantile_of_the_null_points_scores_only(noisy):
    null = with_relabelled_null(noisy, count=4)
    scores = np.zeros(null.dataset.n_train)
    scores[null.null_points] = [0.2, 0.4, 0.6, 0.8]
    assert null.threshold(scores, 0.0) == pytest.approx(0.2)
    assert null.threshold(scores, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one entry per training point"):
        null.threshold(scores[:-1])
    with pytest.raises(ValueError, match="quantile"):
        null.threshold(scores, 1.5)


@pytest.mark.parametrize("count", [0, 10**6])
def test_count_must_fit_the_test_split(noisy, count):
    with pytest.raises(ValueError, match="count must lie between 1 and"):
        with_relabelled_null(noisy, count=count)
