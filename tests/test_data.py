"""Data sets: the synthetic long-tail generator, digits, inferred sub-populations, Dataset itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import UNKNOWN_GROUP, Dataset, SubpopulationSpec, digits, infer_subpopulations, synthetic

SMALL = SubpopulationSpec(num_classes=3, dim=6, subpops_per_class=5, largest=40, tail_exponent=1.5,
                          singletons_per_class=2, test_ratio=0.3, test_min=2, seed=7)


def true_class(dataset: Dataset, spec: SubpopulationSpec, groups: np.ndarray) -> np.ndarray:
    """The generator numbers groups class by class, len(spec.sizes()) per class."""
    return groups // len(spec.sizes())


def test_sizes_follow_the_zipf_formula():
    # round(40 * rank ** -1.5) for rank 1..5 = 40, 14.1, 7.7, 5, 3.6, then two singletons.
    assert SMALL.sizes() == [40, 14, 8, 5, 4, 1, 1]
    # Tail sizes never drop below 2 (10 * 5 ** -1.5 = 0.89): only the singletons have size 1.
    assert SubpopulationSpec(largest=10, subpops_per_class=5, singletons_per_class=0).sizes() == [10, 4, 2, 2, 2]


def test_synthetic_realises_the_sizes_and_its_shapes():
    data = synthetic(SMALL)
    sizes = SMALL.sizes()
    assert data.n_train == SMALL.num_classes * sum(sizes)
    assert data.x_train.shape == (data.n_train, SMALL.dim) and data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64 and data.num_classes == 3
    counts = np.bincount(data.group_train)
    assert counts.tolist() == sizes * SMALL.num_classes
    assert np.array_equal(data.y_train.numpy(), true_class(data, SMALL, data.group_train))  # no noise


def test_synthetic_is_deterministic_in_its_seed():
    first, again = synthetic(SMALL), synthetic(SMALL)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert first.fingerprint == again.fingerprint
    other = synthetic(SubpopulationSpec(**{**SMALL.__dict__, "seed": 8}))
    assert not torch.equal(first.x_train, other.x_train)
    assert first.fingerprint != other.fingerprint


def test_group_sizes_match_a_direct_count():
    data = synthetic(SMALL)
    for i in range(data.n_train):
        assert data.group_size_train[i] == (data.group_train == data.group_train[i]).sum()


def test_group_sizes_are_zero_where_unknown():
    data = synthetic(SMALL)
    groups = data.group_train.copy()
    groups[:3] = UNKNOWN_GROUP
    partial = Dataset("partial", data.x_train, data.y_train, data.x_test, data.y_test, 3, group_train=groups)
    assert (partial.group_size_train[:3] == 0).all() and (partial.group_size_train[3:] > 0).all()
    bare = Dataset("bare", data.x_train, data.y_train, data.x_test, data.y_test, 3)
    assert not bare.group_size_train.any()


def test_test_split_holds_every_subpopulation_with_clean_labels():
    data = synthetic(SubpopulationSpec(**{**SMALL.__dict__, "label_noise": 0.3}))
    assert set(data.group_test.tolist()) == set(data.group_train.tolist())
    test_counts = np.bincount(data.group_test)
    expected = [max(SMALL.test_min, round(SMALL.test_ratio * size)) for size in SMALL.sizes()] * SMALL.num_classes
    assert test_counts.tolist() == expected
    assert np.array_equal(data.y_test.numpy(), true_class(data, SMALL, data.group_test))


def test_label_noise_flips_about_the_requested_share_to_a_wrong_class():
    spec = SubpopulationSpec(num_classes=4, dim=2, subpops_per_class=10, largest=100, singletons_per_class=5,
                             label_noise=0.2, seed=1)
    data = synthetic(spec)
    flipped = data.mislabeled_train
    n = data.n_train
    # Binomial(n, 0.2): four standard deviations either side.
    assert abs(flipped.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)
    clean = true_class(data, spec, data.group_train)
    labels = data.y_train.numpy()
    assert (labels[flipped] != clean[flipped]).all()
    assert (labels[~flipped] == clean[~flipped]).all()
    assert labels.min() >= 0 and labels.max() < spec.num_classes


def singleton_neighbour_agreement(data) -> float:
    """Share of singletons whose nearest other training point has their label."""
    x, y = data.x_train.numpy(), data.y_train.numpy()
    alone = data.group_size_train == 1
    distances = ((x[alone][:, None] - x[~alone][None]) ** 2).sum(-1)
    return float((y[~alone][distances.argmin(1)] == y[alone]).mean())


def test_class_structure_makes_singletons_typical_of_their_class():
    spec = SubpopulationSpec(num_classes=4, dim=16, subpops_per_class=6, largest=30, singletons_per_class=8)
    plain, shaped = synthetic(spec), synthetic(SubpopulationSpec(**{**spec.__dict__, "class_spread": 0.3}))
    assert singleton_neighbour_agreement(shaped) == 1.0 > singleton_neighbour_agreement(plain)


@pytest.mark.parametrize("changes, message", [
    ({"num_classes": 1}, "num_classes"),
    ({"label_noise": 1.0}, "label_noise"),
    ({"label_noise": -0.1}, "label_noise"),
    ({"largest": 1}, "largest"),
    ({"subpops_per_class": -1}, "counts"),
    ({"subpops_per_class": 0, "singletons_per_class": 0}, "at least one sub-population"),
    ({"dim": 0}, "dim"),
    ({"spread": -1.0}, "spread"),
    ({"test_min": 0}, "test_min"),
    ({"test_ratio": -0.5}, "test_ratio"),
    ({"class_spread": -0.1}, "class_spread"),
])
def test_subpopulation_spec_rejects_invalid_values(changes, message):
    with pytest.raises(ValueError, match=message):
        SubpopulationSpec(**changes)


def test_dataset_rejects_mismatched_lengths():
    x, y = torch.zeros(5, 2), torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="inputs and labels differ in length"):
        Dataset("bad", x, y[:4], x, y, 2)
    with pytest.raises(ValueError, match="inputs and labels differ in length"):
        Dataset("bad", x, y, x[:3], y, 2)
    with pytest.raises(ValueError, match="group_train has 4 ids for 5 points"):
        Dataset("bad", x, y, x, y, 2, group_train=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="group_test has 6 ids for 5 points"):
        Dataset("bad", x, y, x, y, 2, group_test=np.zeros(6, dtype=np.int64))


def test_without_drops_the_flagged_training_points_only():
    data = synthetic(SubpopulationSpec(**{**SMALL.__dict__, "label_noise": 0.2}))
    drop = np.zeros(data.n_train, dtype=bool)
    drop[[0, 5, data.n_train - 1]] = True
    kept = data.without(drop, name_suffix="-minus3")
    assert kept.name == "synthetic-minus3" and kept.n_train == data.n_train - 3
    keep = ~drop
    assert torch.equal(kept.x_train, data.x_train[torch.from_numpy(keep)])
    assert torch.equal(kept.y_train, data.y_train[torch.from_numpy(keep)])
    assert np.array_equal(kept.group_train, data.group_train[keep])
    assert np.array_equal(kept.mislabeled_train, data.mislabeled_train[keep])
    assert torch.equal(kept.x_test, data.x_test) and np.array_equal(kept.group_test, data.group_test)
    assert kept.meta["dropped"] == 3
    assert kept.fingerprint != data.fingerprint
    # The sizes are recomputed on what is left: points 0 and 5 both came from group 0.
    assert data.group_train[0] == data.group_train[5] == kept.group_train[0]
    assert kept.group_size_train[0] == data.group_size_train[0] - 2


@pytest.fixture(scope="module")
def digits_data() -> Dataset:
    return digits()


def test_digits_shapes(digits_data):
    data = digits_data
    assert data.n_train + data.n_test == 1797
    assert data.n_test == round(0.33 * 1797)
    assert data.x_train.shape == (data.n_train, 64) and data.x_test.shape == (data.n_test, 64)
    assert data.x_train.dtype == torch.float32
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert data.x_train.max() == 1.0  # scaled by 16, the raw maximum
    assert data.num_classes == 10 and sorted(data.y_train.unique().tolist()) == list(range(10))
    assert data.group_train is None
    assert torch.equal(digits(seed=0).x_train, data.x_train)
    assert not torch.equal(digits(seed=1).x_train, data.x_train)


def test_infer_subpopulations_labels_every_point_within_its_class(digits_data):
    # A subset keeps the clustering fast; class-balance is irrelevant here.
    drop = np.ones(digits_data.n_train, dtype=bool)
    drop[:400] = False
    data = infer_subpopulations(digits_data.without(drop))
    assert (data.group_train != UNKNOWN_GROUP).all() and (data.group_test != UNKNOWN_GROUP).all()
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    for group in np.unique(data.group_train):
        assert len(np.unique(y_train[data.group_train == group])) == 1, "a cluster mixes classes"
    train_class_of_group = {g: y for g, y in zip(data.group_train.tolist(), y_train.tolist())}
    assert all(train_class_of_group[g] == y for g, y in zip(data.group_test.tolist(), y_test.tolist()))
    # The default cut gives a spread of cluster sizes, not one cluster per class or per point.
    sizes = np.bincount(data.group_train)
    assert 10 < len(sizes) < data.n_train and sizes.max() > 1
    assert np.isin(data.group_test, data.group_train).all()
    assert "inferred" in data.meta["subpopulations"]
