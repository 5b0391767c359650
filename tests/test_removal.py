"""Removal experiments (harness.removal) and near-duplicate leakage (harness.leakage) on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

import tables
from harness import profiles
from harness.data import SubpopulationSpec, synthetic
from harness.experiments import selection_scores
from harness.leakage import (
    copy_weights_matching_clean_mix,
    detect_near_duplicates,
    plant_near_duplicates,
    training_nn_distances,
)
from harness.removal import (
    FULL_ARM,
    low_score_large_selection,
    marginal_utility,
    random_selection,
    removal_experiment,
    select_above,
    selection_flip_rates,
)
from harness.store import Store
from harness.train import MLPSpec, RidgeSpec

TINY = SubpopulationSpec(num_classes=3, dim=8, subpops_per_class=3, largest=12, singletons_per_class=1)
RIDGE = RidgeSpec(features=32)
MODELS = 4


@pytest.fixture(scope="module")
def data():
    return synthetic(TINY)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("removal_store"))


def test_select_above_is_inclusive_and_never_selects_nan():
    chosen = select_above([0.1, 0.25, np.nan, 0.9], 0.25)
    assert chosen.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="NaN"):
        select_above([0.1], float("nan"))


def test_random_selection_draws_exactly_count_points_deterministically():
    chosen = random_selection(50, 7, seed=3)
    assert chosen.dtype == np.bool_ and chosen.sum() == 7
    assert np.array_equal(chosen, random_selection(50, 7, seed=3))
    with pytest.raises(ValueError, match="cannot draw"):
        random_selection(5, 6)


def test_low_score_large_selection_takes_lowest_scores_of_large_subpopulations_only():
    scores = np.array([0.0, 0.9, 0.1, 0.2, 0.05, np.nan])
    sizes = np.array([3, 20, 20, 20, 11, 20])  # point 0 is in a small sub-population
    chosen = low_score_large_selection(scores, sizes, 2)
    assert np.flatnonzero(chosen).tolist() == [2, 4]
    # Asking for more than there are takes every eligible (scored, large) point.
    assert low_score_large_selection(scores, sizes, 10).sum() == 4


def test_removing_nothing_reuses_the_full_models_and_drops_exactly_zero(data, store):
    result = marginal_utility(data, RIDGE, {"nothing": np.zeros(data.n_train, dtype=bool)}, MODELS, store)
    drop = result.drop("nothing")
    assert drop.estimate == drop.lower == drop.upper == 0.0
    assert result.models == MODELS


def test_removing_a_whole_subpopulation_purges_it_and_costs_its_test_points(data, store):
    group = int(data.group_train[np.argmax(data.group_size_train)])  # the largest sub-population
    removed = data.group_train == group
    result = marginal_utility(data, RIDGE, {"purge": removed}, MODELS, store)
    assert result.purged_groups("purge").tolist() == [group]
    purged_tests = result.purged_test_points("purge")
    assert np.array_equal(purged_tests, data.group_test == group)
    table = result.by_subpopulation("purge")
    row = table.set_index("group").loc[group]
    assert row["purged"] and row["removed"] == row["train_size"] == removed.sum()
    assert table["purged"].sum() == 1
    # A whole class-cluster gone: its test points (of a class that has other clusters) suffer.
    assert result.drop("purge", purged_tests).estimate > 0
    frame = result.to_dataframe()
    assert list(frame.index) == [FULL_ARM, "purge"]
    assert frame.loc["purge", "removed"] == removed.sum() and frame.loc["purge", "purged_subpopulations"] == 1
    assert result.models == 2 * MODELS


def test_drop_on_all_test_points_is_the_weighted_drops_of_a_partition(data, store):
    removed = random_selection(data.n_train, 10, seed=1)
    result = marginal_utility(data, RIDGE, {"random": removed}, MODELS, store)
    part = np.arange(data.n_test) % 3 == 0
    share = part.mean()
    whole = result.per_model_drop("random")
    mixed = share * result.per_model_drop("random", part) + (1 - share) * result.per_model_drop("random", ~part)
    assert np.allclose(whole, mixed)
    assert np.allclose(result.per_model_drop("random", part.astype(float) * 7.0), result.per_model_drop("random", part))
    with pytest.raises(ValueError, match=">= 0"):
        result.per_model_drop("random", -part.astype(float))
    contrast = result.drop_contrast("random", part, ~part)
    assert contrast.estimate == pytest.approx(result.drop("random", part).estimate
                                              - result.drop("random", ~part).estimate)


def test_removal_experiment_builds_the_three_arms_of_equal_size(data, store):
    scores = np.linspace(0, 1, data.n_train)
    result = removal_experiment(data, RIDGE, scores, 0.9, MODELS, store)
    removed = {name: arm.count for name, arm in result.arms.items()}
    expected = int((scores >= 0.9).sum())
    assert removed == {"memorized": expected, "random": expected, "low-score large": expected}
    large = data.group_size_train >= 11
    assert large[result.arm("low-score large").fixed_set].all()
    # The random arm draws a set of its own for each model, so resampling models redraws it.
    random_sets = result.arm("random").removed
    assert random_sets.shape == (MODELS, data.n_train) and len({row.tobytes() for row in random_sets}) == MODELS
    with pytest.raises(ValueError, match="different set for each model"):
        result.arm("random").fixed_set
    span = result.drop_range(["memorized", "random", "low-score large"])
    drops = [result.drop(name).estimate for name in result.arms]
    assert span.estimate == pytest.approx(max(drops) - min(drops))


def test_every_arm_is_a_mask_plan_on_s_with_the_seeds_of_s_by_model_index():
    from harness.masks import removal_plan

    nothing = removal_plan(np.zeros((3, 10), dtype=bool))
    removed = np.zeros((3, 10), dtype=bool)
    removed[:, 4] = True
    some = removal_plan(removed)
    assert np.array_equal(nothing.seeds(5), some.seeds(5))   # model k of every arm pairs up
    assert not np.array_equal(nothing.seeds(5), nothing.seeds(6))
    assert (some.masks[:, 4] == False).all() and some.masks[:, :4].all()  # noqa: E712
    with pytest.raises(ValueError, match="2-D bool"):
        removal_plan(np.zeros(10, dtype=bool))


def test_removal_intervals_resample_the_test_points_as_well_as_the_models(data, store):
    removed = random_selection(data.n_train, 10, seed=1)
    result = marginal_utility(data, RIDGE, {"random": removed}, MODELS, store)
    drop = result.drop("random")
    assert drop.var_points_only > 0 and drop.var_models_only >= 0
    assert drop.lower < drop.estimate < drop.upper


def test_bad_removals_are_refused_with_a_clear_message(data, store):
    with pytest.raises(ValueError, match="bool mask"):
        marginal_utility(data, RIDGE, {"bad": np.zeros(3, dtype=bool)}, MODELS, store)
    with pytest.raises(ValueError, match="every training point"):
        marginal_utility(data, RIDGE, {"all": np.ones(data.n_train, dtype=bool)}, MODELS, store)
    with pytest.raises(ValueError, match="removals is empty"):
        marginal_utility(data, RIDGE, {}, MODELS, store)
    with pytest.raises(ValueError, match="arms must include"):
        removal_experiment(data, RIDGE, np.zeros(data.n_train), 0.5, MODELS, store, arms=("random",))
    result = marginal_utility(data, RIDGE, {"x": random_selection(data.n_train, 2)}, MODELS, store)
    with pytest.raises(ValueError, match="no arm"):
        result.drop("y")
    with pytest.raises(ValueError, match="selects no test point"):
        result.drop("x", np.zeros(data.n_test, dtype=bool))


def test_selection_scores_cover_every_point_or_only_the_given_targets(data, store):
    profile = profiles.SMOKE
    loo, _ = selection_scores(data, RIDGE, profile, store, rate=None)
    assert loo.shape == (data.n_train,) and not np.isnan(loo).any()
    targets = np.array([0, 5])
    only, _ = selection_scores(data, RIDGE, profile, store, rate=None, targets=targets)
    assert np.flatnonzero(~np.isnan(only)).tolist() == [0, 5]
    with pytest.raises(ValueError, match="closed form"):
        selection_scores(data, MLPSpec(), profile, store, rate=None)
    with pytest.raises(ValueError, match="exact LOO"):
        selection_scores(data, RIDGE, profile, store, targets=targets)


# ----------------------------------------------------------------------------- leakage


def test_planted_copies_sit_near_their_source_with_its_label_and_subpopulation(data):
    sources = np.array([0, 7, 30])
    split = plant_near_duplicates(data, sources, relative_noise=0.1, seed=2)
    leaked = split.dataset
    assert leaked.n_test == data.n_test + 3 and leaked.n_train == data.n_train
    assert split.leaked.sum() == 3 and split.source[split.leaked].tolist() == sources.tolist()
    assert leaked.y_test[-3:].tolist() == data.y_train[sources].tolist()
    assert leaked.group_test[-3:].tolist() == data.group_train[sources].tolist()
    distance = (leaked.x_test[-3:] - data.x_train[sources]).norm(dim=1).numpy()
    assert (distance < 0.5 * np.median(training_nn_distances(data))).all()
    assert leaked.fingerprint != data.fingerprint
    with pytest.raises(ValueError, match="training point indices"):
        plant_near_duplicates(data, [data.n_train])


def test_detection_finds_the_planted_copies_and_few_clean_points(data):
    split = plant_near_duplicates(data, np.arange(0, data.n_train, 4), seed=0)
    found = detect_near_duplicates(split.dataset)
    assert found.leaked[split.leaked].all()
    assert np.array_equal(found.source[split.leaked], split.source[split.leaked])
    assert found.leaked[~split.leaked].mean() <= 0.1
    with pytest.raises(ValueError, match="quantile"):
        detect_near_duplicates(data, quantile=1.5)


def test_copy_weights_give_the_copies_the_clean_subpopulation_mix(data):
    split = plant_near_duplicates(data, np.arange(data.n_train))
    weights = copy_weights_matching_clean_mix(split)
    assert weights.sum() == pytest.approx(1.0) and (weights[~split.leaked] == 0).all()
    groups = split.dataset.group_test
    for group in np.unique(data.group_test).tolist():
        clean_share = (data.group_test == group).mean()
        assert weights[split.leaked & (groups == group)].sum() == pytest.approx(clean_share)



def test_flip_rates_are_zero_far_from_the_threshold_and_at_most_a_half_near_it():
    rng = np.random.default_rng(0)
    rates = selection_flip_rates(tables.subsampled(0.5 + np.array([0.25, 0.5, -0.4]), np.full(3, 0.5), 400, rng),
                                 0.25, halvings=200)
    assert rates[1] == rates[2] == 0.0
    # One ensemble's rate scatters: 1/2 where its own estimate sits on the threshold (the halves
    # straddle it), less the further off it lies; 1/4 on average over ensembles for a point on it.
    assert 0.0 < rates[0] <= 0.5


def test_flip_rates_bound_how_often_other_seeds_change_a_points_membership():
    """Across 300 independent scoring ensembles, the variance of each point's membership
    p (1 - p) stays below the mean flip rate (module docstring: a bound, with equality at the
    threshold); a flip rate computed from the full ensemble's own selection noise would fall short."""
    threshold, models = 0.25, 120
    sd = np.sqrt(0.25 / (models * 0.7) + 0.25 / (models * 0.3))
    offsets = np.array([0.0, 0.5, 1.0, 2.0]) * sd
    rng = np.random.default_rng(1)
    members, flips = [], []
    for _ in range(300):
        scores = tables.subsampled(0.5 + threshold + offsets, np.full(len(offsets), 0.5), models, rng)
        members.append(scores.score >= threshold)
        flips.append(selection_flip_rates(scores, threshold, halvings=20, seed=int(rng.integers(1 << 30))))
    p = np.mean(members, axis=0)
    membership_variance, mean_flip = p * (1 - p), np.mean(flips, axis=0)
    assert (mean_flip >= 0.9 * membership_variance).all(), (mean_flip, membership_variance)
    assert mean_flip[2] > 1.1 * membership_variance[2]   # one sd out, a bound (0.18 against 0.13 if normal)
