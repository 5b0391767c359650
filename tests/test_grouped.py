"""Grouped leave-out (harness.grouped): compatible groups, the plan's layout, bad inputs, and
the estimator on a hand-made ensemble whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness.data import UNKNOWN_GROUP, Dataset, SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.estimators import exact_loo
from harness.grouped import (
    SEVERAL_LEFT_OUT,
    compatible_groups,
    conflict_matrix,
    grouped_plan,
    grouped_scores,
    median_neighbour_distance,
)
from harness.store import Store
from harness.train import RidgeSpec


def hand_made(features, subpopulation) -> Dataset:
    features = np.asarray(features, dtype=np.float32)
    n = len(features)
    return Dataset("hand-made", torch.from_numpy(features), torch.zeros(n, dtype=torch.int64),
                   torch.from_numpy(features[:1]), torch.zeros(1, dtype=torch.int64), num_classes=2,
                   group_train=np.asarray(subpopulation, dtype=np.int64),
                   group_test=np.zeros(1, dtype=np.int64))


def far_apart(n: int) -> np.ndarray:
    """n points 100 apart from one another (a scaled identity)."""
    return 100.0 / np.sqrt(2) * np.eye(n)


def assert_compatible(plan) -> None:
    position = {p: a for a, p in enumerate(plan.targets.tolist())}
    for members in plan.groups:
        rows = [position[p] for p in members.tolist()]
        block = plan.conflicts[np.ix_(rows, rows)]
        assert not (block & ~np.eye(len(rows), dtype=bool)).any(), f"conflicting targets share group {members}"


# ----------------------------------------------------------------------------- conflicts and groups


def test_conflicts_join_shared_known_subpopulations_and_close_points_only():
    features = far_apart(6)
    features[5] = features[4]
    features[5, 0] += 0.5  # points 4 and 5 are 0.5 apart
    subpopulation = [0, 0, 1, UNKNOWN_GROUP, UNKNOWN_GROUP, 2]
    conflicts = conflict_matrix([0, 1, 2, 3, 4, 5], np.array(subpopulation), features, min_distance=1.0)
    expected = np.eye(6, dtype=bool)
    expected[0, 1] = expected[1, 0] = True   # same sub-population
    expected[4, 5] = expected[5, 4] = True   # closer than 1
    # 3 and 4 share UNKNOWN_GROUP, which is no sub-population: no conflict.
    assert np.array_equal(conflicts, expected)


def test_conflicts_without_features_use_subpopulations_alone():
    conflicts = conflict_matrix([0, 1, 2], np.array([5, 5, 6]), None, 0.0)
    assert conflicts.tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_greedy_groups_reach_the_clique_bound_and_stay_balanced():
    # 3 targets share one sub-population (a 3-clique), 6 others conflict with nothing.
    subpopulation = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6])
    groups = compatible_groups(conflict_matrix(np.arange(9), subpopulation, None, 0.0))
    assert len(groups) == 3
    assert sorted(len(g) for g in groups) == [3, 3, 3]
    assert sorted(np.concatenate(groups).tolist()) == list(range(9))
    assert all(len(set(subpopulation[g].tolist())) == len(g) for g in groups)


def test_max_group_size_caps_every_group():
    # Without conflicts every target fits the first group; the cap opens new ones.
    assert [len(g) for g in compatible_groups(np.eye(7, dtype=bool))] == [7]
    assert [len(g) for g in compatible_groups(np.eye(7, dtype=bool), max_group_size=3)] == [3, 3, 1]


@given(seed=st.integers(0, 10**6), n_targets=st.integers(1, 25), density=st.floats(0.0, 0.6))
def test_groups_partition_the_targets_without_conflicts_for_any_graph(seed, n_targets, density):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n_targets, n_targets)) < density, 1)
    conflicts = upper | upper.T | np.eye(n_targets, dtype=bool)
    groups = compatible_groups(conflicts)
    assert sorted(np.concatenate(groups).tolist()) == list(range(n_targets))
    for members in groups:
        assert conflicts[np.ix_(members, members)].sum() == len(members)  # only the diagonal
    # Greedy colouring never needs more than the largest degree + 1 colours.
    assert len(groups) <= (conflicts.sum(1) - 1).max() + 1


# ----------------------------------------------------------------------------- the plan


TINY = SubpopulationSpec(num_classes=3, dim=8, subpops_per_class=4, largest=12, singletons_per_class=2)


@pytest.fixture(scope="module")
def tiny():
    return synthetic(TINY)


def test_plan_on_synthetic_data_keeps_subpopulation_mates_and_close_points_apart(tiny):
    targets = np.arange(0, tiny.n_train, 2)
    models = 3
    plan = grouped_plan(tiny, targets, models)
    features = tiny.x_train.numpy()
    for members in plan.groups:
        assert len(set(tiny.group_train[members].tolist())) == len(members), "sub-population mates grouped"
        gaps = np.linalg.norm(features[members, None] - features[None, members], axis=-1)
        assert (gaps[~np.eye(len(members), dtype=bool)] >= plan.min_distance).all(), "close targets grouped"
    assert_compatible(plan)
    # At least as many groups as the most targets sharing one sub-population.
    assert plan.n_groups >= np.bincount(tiny.group_train[targets]).max()
    assert plan.min_distance == pytest.approx(2.0 * median_neighbour_distance(features))


def test_plan_leaves_every_target_out_of_exactly_m_models_and_nothing_else(tiny):
    targets = np.array([0, 1, 2, 20, 40, 41, tiny.n_train - 1])
    models = 4
    plan = grouped_plan(tiny, targets, models)
    masks = plan.plan.masks
    assert plan.plan.kind == "grouped" and plan.plan.n_models == (plan.n_groups + 1) * models
    for g, members in enumerate(plan.groups):                 # only deliberate leave-outs
        left_out = np.isin(np.arange(tiny.n_train), members)
        assert (~masks[plan.group_of_model == g] == left_out).all()
    assert ((~masks)[:, targets].sum(0) == models).all()
    others = np.setdiff1d(np.arange(tiny.n_train), targets)
    assert masks[:, others].all()
    base = plan.group_of_model == -1
    assert base.sum() == models and masks[base].all()
    assert (plan.plan.left_out[base] == -1).all() and (plan.plan.left_out[~base] == SEVERAL_LEFT_OUT).all()
    assert sorted(np.concatenate(plan.groups).tolist()) == sorted(targets.tolist())
    assert plan.exact_loo_models == (len(targets) + 1) * models
    table = plan.to_dataframe()
    assert table.index.tolist() == sorted(targets.tolist()) and table["group"].max() == plan.n_groups - 1


def test_plan_without_known_subpopulations_separates_by_distance():
    features = far_apart(6)
    features[1] = features[0]
    features[1, 0] += 0.1
    data = hand_made(features, [UNKNOWN_GROUP] * 6)
    plan = grouped_plan(data, np.arange(6), 2, min_distance=1.0)
    assert plan.n_groups == 2 and not any({0, 1} <= set(g.tolist()) for g in plan.groups)


def test_exact_loo_refuses_a_grouped_plan_instead_of_misreading_it(tiny):
    plan = grouped_plan(tiny, [0, 30], 2).plan
    with pytest.raises(ValueError, match="never left out"):
        exact_loo(plan.masks, np.ones(plan.masks.shape), plan.left_out, targets=[0, 30])


@pytest.mark.parametrize("targets, models, message", [
    ([], 2, "non-empty"), ([1, 1], 2, "distinct"), ([[0, 1]], 2, "1-D"),
    ([-1, 2], 2, "training point indices"), ([0, 10**6], 2, "training point indices"),
    ([0, 1], 0, ">= 1"), ([0, 1], 1.5, "integer"),
])
def test_plan_rejects_bad_targets_and_model_counts(tiny, targets, models, message):
    with pytest.raises(ValueError, match=message):
        grouped_plan(tiny, targets, models)


def test_plan_rejects_bad_distances_and_sizes(tiny):
    with pytest.raises(ValueError, match=">= 0"):
        grouped_plan(tiny, [0, 1], 2, min_distance=-1.0)
    with pytest.raises(ValueError, match="finite"):
        grouped_plan(tiny, [0, 1], 2, min_distance=float("nan"))
    with pytest.raises(ValueError, match="max_group_size"):
        grouped_plan(tiny, [0, 1], 2, max_group_size=0)
    unknown = hand_made(far_apart(3), [UNKNOWN_GROUP] * 3)
    with pytest.raises(ValueError, match="unknown"):
        grouped_plan(unknown, [0, 1], 2, min_distance=0.0)


def test_conflict_helpers_reject_what_they_cannot_use():
    with pytest.raises(ValueError, match="sub-population ids or features"):
        conflict_matrix([0, 1], None, None, 0.0)
    with pytest.raises(ValueError, match="needs features"):
        conflict_matrix([0, 1], np.array([0, 1]), None, 1.0)
    with pytest.raises(ValueError, match="symmetric"):
        compatible_groups(np.array([[True, True], [False, True]]))
    with pytest.raises(ValueError, match="square"):
        compatible_groups(np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="at least 2 points"):
        median_neighbour_distance(np.zeros((1, 3)))


# ----------------------------------------------------------------------------- the estimator


@pytest.fixture
def four_targets():
    """Targets 0..3 with 0 and 1 sharing a sub-population: groups [0, 2] and [1, 3], M = 2.
    Rows 0-1 base, rows 2-3 leave out group [0, 2], rows 4-5 leave out [1, 3]."""
    plan = grouped_plan(hand_made(far_apart(5), [0, 0, 1, 2, 3]), [0, 1, 2, 3], 2, min_distance=1.0)
    assert [g.tolist() for g in plan.groups] == [[0, 2], [1, 3]]
    assert plan.group_of_model.tolist() == [-1, -1, 0, 0, 1, 1]
    return plan


MARGINS = np.array([[1.0, 1.0, 1.0, -1.0, 0.0],
                    [1.0, 1.0, -1.0, -1.0, 0.0],
                    [1.0, 5.0, -1.0, 1.0, 0.0],
                    [-1.0, 5.0, -1.0, -1.0, 0.0],
                    [7.0, -1.0, 1.0, 1.0, 0.0],
                    [7.0, 0.0, 1.0, 1.0, 0.0]])
# target 0: in rows 0-1 (2/2), out rows 2-3 (1/2)            -> 0.5; group [1, 3] holds its mate 1
# target 1: in rows 0-1 (2/2), out rows 4-5 (0/2, tie wrong) -> 1.0; group [0, 2] holds its mate 0
# target 2: in rows 0-1 (1/2), out rows 2-3 (0/2)            -> 0.5; pooled in adds rows 4-5: 3/4
# target 3: in rows 0-1 (0/2), out rows 4-5 (2/2)            -> -1;  pooled in adds rows 2-3: 1/4


def test_estimator_by_hand(four_targets):
    scores = grouped_scores(four_targets, MARGINS)
    assert scores.method == "grouped" and scores.points.tolist() == [0, 1, 2, 3]
    assert scores.correct_in.tolist() == [2, 2, 1, 0] and scores.n_in.tolist() == [2, 2, 2, 2]
    assert scores.correct_out.tolist() == [1, 0, 0, 2] and scores.n_out.tolist() == [2, 2, 2, 2]
    np.testing.assert_allclose(scores.score, [0.5, 1.0, 0.5, -1.0])
    assert (scores.lower <= scores.score).all() and (scores.score <= scores.upper).all()


def test_pooled_estimator_by_hand_adds_only_models_free_of_the_targets_conflicts(four_targets):
    scores = grouped_scores(four_targets, MARGINS, pool_in=True)
    assert scores.method == "grouped (pooled P_in)"
    assert scores.correct_in.tolist() == [2, 2, 3, 1] and scores.n_in.tolist() == [2, 2, 4, 4]
    np.testing.assert_allclose(scores.score, [0.5, 1.0, 0.75, -0.75])
    assert scores.n_out.tolist() == [2, 2, 2, 2]


def test_estimator_rejects_margins_that_do_not_fit_the_plan(four_targets):
    with pytest.raises(ValueError, match="shape"):
        grouped_scores(four_targets, MARGINS[:, :4])
    broken = MARGINS.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        grouped_scores(four_targets, broken)


def test_pooled_and_base_only_in_agree_on_trained_ridge_models(tiny, tmp_path):
    """Pooling P_in over models that left out far-away groups must not move the scores: each
    target's two estimates agree within their intervals, and on average within 0.05."""
    targets = np.arange(0, tiny.n_train, 3)
    plan = grouped_plan(tiny, targets, 12)
    ensemble = train_ensemble(tiny, RidgeSpec(features=64), plan.plan, Store(tmp_path), progress=False)
    base = grouped_scores(plan, ensemble.arrays["train_margin"])
    pooled = grouped_scores(plan, ensemble.arrays["train_margin"], pool_in=True)
    assert (pooled.n_in >= base.n_in).all() and (pooled.n_in > base.n_in).any()
    assert ((pooled.lower <= base.upper) & (base.lower <= pooled.upper)).all()
    assert abs(float((pooled.score - base.score).mean())) < 0.05
