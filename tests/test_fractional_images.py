"""fractional-definition on real images: the planted-noise variants and the truth on inferred sub-populations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import experiments
from harness.claims.fractional_definition import SMALLEST_NEGATIVE_SUBPOPULATION, memorized_truth, study
from harness.data import Dataset, SubpopulationSpec, infer_subpopulations, synthetic, with_planted_label_noise
from harness.experiments import LABEL_NOISE, Case, load_dataset, register_dataset
from harness.null import with_relabelled_null
from harness.profiles import SMOKE
from harness.store import Store

NUM_CLASSES = 3
# Per class: the sizes of its well-separated image clusters, which the clustering recovers exactly.
CLUSTER_SIZES = (SMALLEST_NEGATIVE_SUBPOPULATION, SMALLEST_NEGATIVE_SUBPOPULATION - 1, 3, 1)


def clustered_images(mislabeled_members=None) -> Dataset:
    """Tiny uint8 images whose feature clusters (tight, far apart) are ``CLUSTER_SIZES`` per class,
    with sub-populations inferred on those features as the image data sets' are."""
    rng = np.random.default_rng(0)
    centres, labels = [], []
    for label in range(NUM_CLASSES):
        for size in CLUSTER_SIZES:
            centres += [rng.normal(0.0, 100.0, 4)] * size
            labels += [label] * size
    features = np.asarray(centres) + rng.normal(0.0, 0.01, (len(centres), 4))
    test_features = features[::4] + rng.normal(0.0, 0.01, (len(features[::4]), 4))
    images = rng.integers(0, 256, (len(labels), 1, 4, 4), dtype=np.uint8)
    data = Dataset(name="clustered", x_train=torch.from_numpy(images), y_train=torch.tensor(labels),
                   x_test=torch.from_numpy(images[::4].copy()), y_test=torch.tensor(labels[::4]),
                   num_classes=NUM_CLASSES, mislabeled_train=mislabeled_members)
    # A cut far above the clusters' spread and far below their distances: the clusters as drawn.
    return infer_subpopulations(data, distance_threshold=1.0,
                                features=(features.astype(np.float32), test_features.astype(np.float32)))


def test_on_inferred_subpopulations_only_planted_noise_is_memorized_and_small_clean_ones_are_left_out():
    n = NUM_CLASSES * sum(CLUSTER_SIZES)
    sizes = clustered_images().group_size_train
    assert sorted(np.unique(sizes)) == sorted(set(CLUSTER_SIZES))
    # One planted point in each size of cluster of the first class.
    planted = np.zeros(n, dtype=bool)
    planted[np.cumsum((0,) + CLUSTER_SIZES[:-1])] = True
    truth = memorized_truth(clustered_images(planted))

    large = sizes >= SMALLEST_NEGATIVE_SUBPOPULATION
    assert np.array_equal(truth.memorized, planted)
    assert int(truth.memorized.sum()) == len(CLUSTER_SIZES)
    assert int((truth.counted & ~truth.memorized).sum()) == int(large.sum()) - 1 == NUM_CLASSES * CLUSTER_SIZES[0] - 1
    left_out = NUM_CLASSES * sum(CLUSTER_SIZES[1:]) - (len(CLUSTER_SIZES) - 1)
    assert int((~truth.counted).sum()) == left_out
    assert not (truth.memorized & ~truth.counted).any(), "every planted point is a positive, whatever its cluster"


def test_on_known_subpopulations_singletons_and_mislabeled_are_memorized_and_every_point_counts():
    data = synthetic(SubpopulationSpec(num_classes=3, dim=5, subpops_per_class=4, largest=12,
                                       singletons_per_class=2, label_noise=0.1))
    truth = memorized_truth(data)
    assert truth.counted.all()
    assert np.array_equal(truth.memorized, (data.group_size_train == 1) | data.mislabeled_train)


def test_planted_label_noise_is_an_exact_seeded_share_of_wrong_training_labels():
    clean = clustered_images()
    noisy = with_planted_label_noise(clean, LABEL_NOISE, seed=2, name="clustered-noisy")
    again = with_planted_label_noise(clean, LABEL_NOISE, seed=2, name="clustered-noisy")
    other_seed = with_planted_label_noise(clean, LABEL_NOISE, seed=3, name="clustered-noisy")

    flipped = noisy.y_train.numpy() != clean.y_train.numpy()
    assert noisy.mislabeled_train.sum() == round(LABEL_NOISE * clean.n_train) == flipped.sum()
    assert np.array_equal(flipped, noisy.mislabeled_train)
    assert ((noisy.y_train >= 0) & (noisy.y_train < NUM_CLASSES)).all()
    assert noisy.fingerprint == again.fingerprint != other_seed.fingerprint
    assert torch.equal(noisy.y_test, clean.y_test) and torch.equal(noisy.x_train, clean.x_train)
    assert np.array_equal(noisy.group_train, clean.group_train)
    assert np.array_equal(noisy.group_test, clean.group_test)


@pytest.fixture
def images_from_clustered(monkeypatch):
    """``load_dataset`` with the image sets replaced by the clustered images (no files, no embedding fit)."""
    monkeypatch.setattr(experiments, "load_image_dataset", lambda name, profile: clustered_images())
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


def test_noisy_image_variant_keeps_the_clean_sets_inferred_subpopulations(images_from_clustered):
    clean, noisy = load_dataset("mnist", "smoke"), load_dataset("mnist-noisy", "smoke")
    assert noisy.name == "mnist-noisy"
    assert noisy.mislabeled_train.sum() == round(LABEL_NOISE * clean.n_train)
    assert np.array_equal(noisy.group_train, clean.group_train)
    assert torch.equal(noisy.y_test, clean.y_test)
    assert load_dataset("mnist-noisy", "smoke") is noisy
    with pytest.raises(ValueError, match="one of the suite's data sets"):
        register_dataset(Dataset(name="fashion-mnist-noisy", x_train=clean.x_train, y_train=clean.y_train,
                                 x_test=clean.x_test, y_test=clean.y_test, num_classes=NUM_CLASSES))


def test_relabelled_null_appends_test_images_with_wrong_labels():
    data = clustered_images()
    null = with_relabelled_null(data, count=4)
    assert null.dataset.x_train.dtype == torch.uint8 and null.dataset.x_train.shape[1:] == data.x_train.shape[1:]
    assert torch.equal(null.dataset.x_train[data.n_train:], data.x_test[torch.from_numpy(null.source_test_points)])
    assert (null.dataset.y_train[data.n_train:] != data.y_test[torch.from_numpy(null.source_test_points)]).all()


def test_a_data_set_without_negatives_is_refused_before_any_training(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "_REGISTERED", {})
    planted = np.zeros(NUM_CLASSES * sum(CLUSTER_SIZES), dtype=bool)
    planted[1] = True
    data = clustered_images(planted)
    only_small = data.without(data.group_size_train >= SMALLEST_NEGATIVE_SUBPOPULATION, name_suffix="-small")
    name = register_dataset(only_small)
    store = Store(tmp_path / "store")
    with pytest.raises(ValueError, match="0 not .* needs both"):
        study(Case(name, "mlp"), SMOKE, store, "cpu")
    assert not any(path.is_file() for path in (tmp_path / "store").rglob("*")), "nothing was trained"
    load_dataset.cache_clear()
