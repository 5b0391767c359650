"""Mask plans: balanced subsampling, exact leave-one-out layouts, per-kind seeds, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.masks import checked_masks, full_plan, loo_plan, loo_plan_on_subsets, removal_plan, subsampled_plan


def test_subsampled_plan_puts_every_point_in_exactly_round_rk_models():
    n, models, rate = 200, 40, 0.7
    plan = subsampled_plan(n, models, rate, seed=3)
    assert plan.masks.shape == (models, n) and plan.masks.dtype == np.bool_
    assert (plan.masks.sum(axis=0) == round(rate * models)).all()
    # Rows are random subsets, so their sizes scatter around r n; the total is exact.
    row_sizes = plan.masks.sum(axis=1)
    assert row_sizes.sum() == round(rate * models) * n
    assert np.abs(row_sizes - rate * n).max() < 0.15 * n
    assert (plan.left_out == -1).all()
    assert plan.config() == {"kind": "subsampled", "n": n, "models": models, "rate": rate, "seed": 3}


def test_subsampled_plan_is_deterministic_in_its_seed():
    assert np.array_equal(subsampled_plan(50, 10, 0.5, seed=1).masks, subsampled_plan(50, 10, 0.5, seed=1).masks)
    assert not np.array_equal(subsampled_plan(50, 10, 0.5, seed=1).masks, subsampled_plan(50, 10, 0.5, seed=2).masks)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 60), models=st.integers(1, 60), rate=st.floats(0.01, 0.99))
def test_subsampled_plan_column_counts_are_exact_for_any_valid_input(n, models, rate):
    if models * min(rate, 1 - rate) < 1 - 1e-9:
        with pytest.raises(ValueError, match="use k >="):
            subsampled_plan(n, models, rate)
        return
    masks = subsampled_plan(n, models, rate).masks
    included = masks.sum(axis=0)
    assert (included == round(rate * models)).all()
    assert (included >= 1).all() and (included <= models - 1).all()
    # The realised rate is within half a model of r: the plan never silently changes r much.
    assert abs(included[0] / models - rate) <= 0.5 / models + 1e-12


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_subsampled_plan_rejects_rates_outside_the_open_unit_interval(rate):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        subsampled_plan(10, 100, rate)


@pytest.mark.parametrize("models, rate, need", [(2, 0.7, 4), (3, 0.7, 4), (1, 0.5, 2), (19, 0.95, 20), (4, 0.2, 5)])
def test_subsampled_plan_rejects_too_few_models_and_says_how_many_are_needed(models, rate, need):
    with pytest.raises(ValueError, match=f"use k >= {need}"):
        subsampled_plan(10, models, rate)
    subsampled_plan(10, need, rate)  # the advertised minimum is accepted


def test_subsampled_plan_accepts_the_minimum_despite_float_rounding():
    # 1 - 0.8 is 0.19999999999999996 in floating point; k = 5 still leaves each point out once.
    masks = subsampled_plan(10, 5, 0.8).masks
    assert (masks.sum(axis=0) == 4).all()


def test_loo_plan_layout():
    n, targets, m = 7, [1, 4], 3
    plan = loo_plan(n, targets, m)
    assert plan.masks.shape == (m * (len(targets) + 1), n)
    assert plan.left_out.tolist() == [-1] * 3 + [1] * 3 + [4] * 3
    for row, target in zip(plan.masks, plan.left_out):
        expected = np.ones(n, dtype=bool)
        if target >= 0:
            expected[target] = False
        assert np.array_equal(row, expected)


def test_loo_plan_on_a_base_subset_leaves_only_the_target_out_of_it():
    base = np.array([1, 1, 0, 1, 1], dtype=bool)
    plan = loo_plan(5, [3], 2, base=base)
    assert np.array_equal(plan.masks[:2], np.tile(base, (2, 1)))
    assert np.array_equal(plan.masks[2:], np.tile([1, 1, 0, 0, 1], (2, 1)).astype(bool))


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": [], "models_per_target": 2}, "non-empty"),
    ({"targets": [1, 1], "models_per_target": 2}, "distinct"),
    ({"targets": [5], "models_per_target": 2}, "indices 0..4"),
    ({"targets": [-1], "models_per_target": 2}, "indices 0..4"),
    ({"targets": [2], "models_per_target": 2, "base": np.array([1, 1, 0, 1, 1], dtype=bool)}, "base set"),
    ({"targets": [1], "models_per_target": 0}, "models_per_target must be >= 1"),
    ({"targets": [1], "models_per_target": 2, "base": np.ones(4, dtype=bool)}, r"shape \(5,\)"),
])
def test_loo_plan_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loo_plan(5, **kwargs)


def test_full_plan_and_its_bad_inputs():
    plan = full_plan(4, 3)
    assert plan.masks.all() and plan.masks.shape == (3, 4) and (plan.left_out == -1).all()
    with pytest.raises(ValueError, match="n >= 1"):
        full_plan(0, 3)
    with pytest.raises(ValueError, match=">= 1 models"):
        full_plan(4, 0)


def test_seeds_are_deterministic_and_differ_by_plan_kind():
    full, subsampled = full_plan(20, 10), subsampled_plan(20, 10, 0.5)
    assert np.array_equal(full.seeds(0), full.seeds(0))
    assert len(full.seeds(0)) == full.n_models
    assert not np.array_equal(full.seeds(0), full.seeds(1))
    # Same seed and model count, different kind: the ensembles must not share their draws.
    assert len(np.intersect1d(full.seeds(0), subsampled.seeds(0))) == 0


@pytest.mark.parametrize("masks, n_points, seeds, message", [
    (np.ones((2, 3), dtype=int), None, None, r"2-D bool array of shape \(K, n\).*got int64 \(2, 3\)"),
    (np.ones(3, dtype=bool), None, None, "2-D bool array"),
    (np.ones((0, 3), dtype=bool), None, None, "non-empty"),
    (np.ones((2, 0), dtype=bool), None, None, "non-empty"),
    (np.ones((2, 3), dtype=bool), 4, None, r"shape \(K, 4\)"),
    (np.ones((2, 3), dtype=bool), 3, [1], "2 masks but 1 seeds; give one seed per model"),
    (np.array([[True, False], [False, False]]), 2, [1, 2], r"models \[1\] have an empty training mask"),
])
def test_checked_masks_names_what_is_wrong(masks, n_points, seeds, message):
    with pytest.raises(ValueError, match=message):
        checked_masks(masks, n_points, seeds)


def test_checked_masks_takes_lists_and_empty_rows_outside_training():
    assert checked_masks([[True, False]], 2, [0]).dtype == np.bool_
    assert checked_masks(np.zeros((2, 3), dtype=bool)).shape == (2, 3)      # a plan may remove everything
    with pytest.raises(ValueError, match=r"removed must be a non-empty 2-D bool array"):
        removal_plan(np.zeros((2, 3), dtype=int))


def test_loo_plan_on_subsets_leaves_each_held_target_out_of_its_own_subset():
    targets = np.array([0, 5, 17, 30])
    plan = loo_plan_on_subsets(40, targets, draws=10, rate=0.7, seed=3)
    bases = np.flatnonzero(plan.left_out == -1)
    assert len(bases) == 10 and (plan.masks[bases].sum(1) == 28).all()
    for start, end in zip(bases, [*bases[1:], plan.n_models]):
        subset = plan.masks[start]
        assert sorted(plan.left_out[start + 1:end]) == sorted(targets[subset[targets]])
        for row in range(start + 1, end):
            expected = subset.copy()
            expected[plan.left_out[row]] = False
            assert (plan.masks[row] == expected).all()
    again = loo_plan_on_subsets(40, targets, draws=10, rate=0.7, seed=3)
    assert (again.masks == plan.masks).all() and (again.left_out == plan.left_out).all()
    assert not (loo_plan_on_subsets(40, targets, draws=10, rate=0.7, seed=4).masks[bases] == plan.masks[bases]).all()


def test_loo_plan_on_subsets_refuses_what_cannot_be_left_out():
    with pytest.raises(ValueError, match="rate"):
        loo_plan_on_subsets(40, [1, 2], draws=4, rate=1.0)
    with pytest.raises(ValueError, match="none of the 1 subsets"):
        loo_plan_on_subsets(40, np.arange(40), draws=1, rate=0.5)
    with pytest.raises(ValueError, match="distinct"):
        loo_plan_on_subsets(40, [1, 1], draws=4, rate=0.5)
