"""Memorization estimators on hand-made ensembles whose answers are worked out by hand.

Convention checked throughout: a model classifies a point correctly iff its margin is > 0
(a tie, margin 0, counts as wrong).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import stats
from harness.estimators import MemorizationScores, closed_form_loo, exact_loo, fractional, subsampled
from harness.masks import loo_plan, loo_plan_on_subsets

# 4 models x 3 points.
SUB_MASKS = np.array([[1, 1, 0],
                      [1, 0, 1],
                      [0, 1, 0],
                      [0, 1, 0]], dtype=bool)
SUB_MARGINS = np.array([[1.0, 2.0, 0.5],
                        [3.0, -1.0, -0.5],
                        [1.0, -2.0, 1.0],
                        [0.0, 1.0, -3.0]])
# point 0: in models 0, 1 (1, 3 -> 2/2); out models 2, 3 (1, 0 -> 1/2, the tie is wrong)
# point 1: in models 0, 2, 3 (2, -2, 1 -> 2/3); out model 1 (-1 -> 0/1)
# point 2: in model 1 (-0.5 -> 0/1); out models 0, 2, 3 (0.5, 1, -3 -> 2/3)
SUB_P_IN = [1.0, 2 / 3, 0.0]
SUB_P_OUT = [0.5, 0.0, 2 / 3]


def assert_interval_contains_score(scores: MemorizationScores):
    assert (scores.lower <= scores.score + 1e-12).all() and (scores.score <= scores.upper + 1e-12).all()
    assert (scores.lower >= -1 - 1e-12).all() and (scores.upper <= 1 + 1e-12).all()


def test_subsampled_by_hand():
    scores = subsampled(SUB_MASKS, SUB_MARGINS)
    assert scores.method == "subsampled"
    assert scores.points.tolist() == [0, 1, 2]
    assert scores.n_in.tolist() == [2, 3, 1] and scores.n_out.tolist() == [2, 1, 3]
    assert scores.correct_in.tolist() == [2, 2, 0] and scores.correct_out.tolist() == [1, 0, 2]
    np.testing.assert_allclose(scores.p_in, SUB_P_IN)
    np.testing.assert_allclose(scores.p_out, SUB_P_OUT)
    np.testing.assert_allclose(scores.score, [0.5, 2 / 3, -2 / 3])
    assert_interval_contains_score(scores)
    # The interval is Newcombe's hybrid score interval of the two counts.
    _, lower, upper = stats.newcombe_difference(scores.correct_in, scores.n_in,
                                                scores.correct_out, scores.n_out, 0.05)
    np.testing.assert_allclose(scores.lower, lower)
    np.testing.assert_allclose(scores.upper, upper)


def test_exact_loo_by_hand_ignores_other_points_of_the_loo_rows():
    plan = loo_plan(3, [0, 2], models_per_target=2)
    assert plan.left_out.tolist() == [-1, -1, 0, 0, 2, 2]
    margins = np.array([[1.0, 9.0, 1.0],     # base: point 0 right twice, point 2 once
                        [2.0, 9.0, -1.0],
                        [-1.0, -9.0, 9.0],   # without 0: point 0 right once
                        [1.0, -9.0, 9.0],
                        [9.0, -9.0, -1.0],   # without 2: point 2 never right
                        [9.0, -9.0, 0.0]])
    scores = exact_loo(plan.masks, margins, plan.left_out)
    assert scores.method == "exact_loo"
    assert scores.points.tolist() == [0, 2]
    np.testing.assert_allclose(scores.p_in, [1.0, 0.5])
    np.testing.assert_allclose(scores.p_out, [0.5, 0.0])
    np.testing.assert_allclose(scores.score, [0.5, 0.5])
    assert scores.n_in.tolist() == [2, 2] and scores.n_out.tolist() == [2, 2]
    assert_interval_contains_score(scores)

    only_two = exact_loo(plan.masks, margins, plan.left_out, targets=[2])
    assert only_two.points.tolist() == [2]
    np.testing.assert_allclose(only_two.score, [0.5])


def test_closed_form_loo_by_hand_counts_only_in_mask_draws():
    masks = np.array([[1, 1, 1],
                      [1, 1, 0],
                      [1, 0, 1],
                      [0, 1, 1]], dtype=bool)
    train = np.array([[1.0, 1.0, -1.0],
                      [1.0, -1.0, 9.0],
                      [1.0, 9.0, -1.0],
                      [9.0, 1.0, -1.0]])
    # Out-of-mask entries are NaN as the ridge trainer writes them; 9.0 marks one that must be ignored.
    loo = np.array([[1.0, -1.0, -1.0],
                    [-1.0, -1.0, np.nan],
                    [-1.0, 9.0, -1.0],
                    [np.nan, 1.0, -1.0]])
    # point 0: draws 0, 1, 2: fit right 3/3, refit without it right 1/3
    # point 1: draws 0, 1, 3: fit right 2/3, refit 1/3
    # point 2: draws 0, 2, 3: fit right 0/3, refit 0/3
    scores = closed_form_loo(masks, train, loo)
    assert scores.method == "closed_form_loo"
    assert scores.n_in.tolist() == [3, 3, 3] and scores.n_out.tolist() == [3, 3, 3]
    np.testing.assert_allclose(scores.p_in, [1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(scores.p_out, [1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(scores.score, [2 / 3, 1 / 3, 0.0])
    assert_interval_contains_score(scores)

    ratio = fractional(scores)
    # (1 - 1/3) / (4/3) = 1/2; (2/3 - 1/3) / 1 = 1/3; 0/0 is defined as 0.
    np.testing.assert_allclose(ratio.score, [0.5, 1 / 3, 0.0])
    assert_interval_contains_score(ratio)
    assert ratio.lower[2] == -1.0 and ratio.upper[2] == 1.0  # nothing known about point 2's ratio


def test_fractional_by_hand():
    scores = fractional(subsampled(SUB_MASKS, SUB_MARGINS))
    assert scores.method == "fractional(subsampled)"
    # (1 - 1/2) / (3/2) = 1/3; (2/3 - 0) / (2/3) = 1; (0 - 2/3) / (2/3) = -1.
    np.testing.assert_allclose(scores.score, [1 / 3, 1.0, -1.0])
    np.testing.assert_allclose(scores.p_in, SUB_P_IN)  # the counts behind it are kept
    assert_interval_contains_score(scores)


def test_fractional_interval_is_the_image_of_the_two_wilson_intervals():
    scores = subsampled(SUB_MASKS, SUB_MARGINS, alpha=0.1)
    ratio = fractional(scores)
    level = 1 - np.sqrt(1 - 0.1)
    in_low, _ = stats.wilson_interval(scores.correct_in, scores.n_in, level)
    _, out_high = stats.wilson_interval(scores.correct_out, scores.n_out, level)
    np.testing.assert_allclose(ratio.lower, (in_low - out_high) / (in_low + out_high))
    assert ratio.alpha == 0.1


def test_at_selects_and_reorders_points():
    plan = loo_plan(5, [4, 1, 3], models_per_target=1)
    margins = np.ones(plan.masks.shape)
    scores = exact_loo(plan.masks, margins, plan.left_out)
    picked = scores.at([3, 1])
    assert picked.points.tolist() == [3, 1]
    assert len(picked) == 2 and picked.method == scores.method
    for name in ("score", "lower", "upper", "n_in", "n_out", "correct_in", "correct_out"):
        position = {p: k for k, p in enumerate(scores.points.tolist())}
        assert getattr(picked, name).tolist() == [getattr(scores, name)[position[p]] for p in (3, 1)]
    with pytest.raises(ValueError, match=r"points \[0\] were not scored"):
        scores.at([1, 0])


def test_to_dataframe():
    frame = subsampled(SUB_MASKS, SUB_MARGINS).to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.name == "point" and frame.index.tolist() == [0, 1, 2]
    assert list(frame.columns) == ["score", "lower", "upper", "p_in", "p_out", "n_in", "n_out"]
    np.testing.assert_allclose(frame.loc[2, ["score", "p_in", "p_out"]].to_numpy(float), [-2 / 3, 0.0, 2 / 3])


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), models=st.integers(2, 12), points=st.integers(1, 8))
def test_subsampled_equals_a_per_point_loop(seed, models, points):
    rng = np.random.default_rng(seed)
    masks = rng.random((models, points)) < 0.5
    masks[0], masks[1] = True, False  # every point in and out of some model
    margins = rng.normal(size=(models, points))
    scores = subsampled(masks, margins)
    for i in range(points):
        inside, outside = margins[masks[:, i], i], margins[~masks[:, i], i]
        assert scores.score[i] == pytest.approx((inside > 0).mean() - (outside > 0).mean())
    assert_interval_contains_score(scores)
    assert_interval_contains_score(fractional(scores))


# --- bad inputs -------------------------------------------------------------------------

def test_masks_of_the_wrong_dtype_or_shape_are_rejected():
    with pytest.raises(ValueError, match="2-D bool array"):
        subsampled(SUB_MASKS.astype(int), SUB_MARGINS)
    with pytest.raises(ValueError, match="2-D bool array"):
        subsampled(SUB_MASKS[0], SUB_MARGINS[0])
    with pytest.raises(ValueError, match="one row per model and one column per training point"):
        subsampled(SUB_MASKS, SUB_MARGINS[:, :2])
    with pytest.raises(ValueError, match="2-D bool array"):
        closed_form_loo(SUB_MASKS.astype(np.uint8), SUB_MARGINS, SUB_MARGINS)
    with pytest.raises(ValueError, match="loo_margin has shape"):
        closed_form_loo(SUB_MASKS, SUB_MARGINS, SUB_MARGINS[:3])


def test_subsampled_rejects_points_never_left_out_or_never_included():
    masks = SUB_MASKS.copy()
    masks[:, 0] = True
    with pytest.raises(ValueError, match=r"\[0\]\) are never left out or never included"):
        subsampled(masks, SUB_MARGINS)
    masks[:, 0] = False
    with pytest.raises(ValueError, match="subsampled_plan"):
        subsampled(masks, SUB_MARGINS)


def test_closed_form_loo_rejects_points_in_no_model():
    masks = np.ones((2, 3), dtype=bool)
    masks[:, 1] = False
    with pytest.raises(ValueError, match="1 points are in no model"):
        closed_form_loo(masks, np.ones((2, 3)), np.ones((2, 3)))


def test_exact_loo_rejects_bad_plans_and_targets():
    plan = loo_plan(4, [0, 2], models_per_target=2)
    margins = np.ones(plan.masks.shape)
    with pytest.raises(ValueError, match=r"targets \[1\] were never left out"):
        exact_loo(plan.masks, margins, plan.left_out, targets=[1, 2])
    with pytest.raises(ValueError, match="one entry per model"):
        exact_loo(plan.masks, margins, plan.left_out[:-1])
    no_base = plan.left_out[2:]
    with pytest.raises(ValueError, match="no model was trained on the full base set"):
        exact_loo(plan.masks[2:], margins[2:], no_base)


def test_nan_margins_from_a_diverged_model_are_rejected_not_counted_as_wrong():
    margins = SUB_MARGINS.copy()
    margins[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"train_margin holds 1 NaN entries \(first: model 2, point 1\)"):
        subsampled(SUB_MASKS, margins)
    plan = loo_plan(3, [0], models_per_target=1)
    with pytest.raises(ValueError, match="a model diverged"):
        exact_loo(plan.masks, np.full(plan.masks.shape, np.nan), plan.left_out)


def test_closed_form_loo_accepts_nan_off_mask_but_not_on_it():
    masks = np.array([[1, 0], [1, 1]], dtype=bool)
    loo = np.array([[1.0, np.nan], [1.0, -1.0]])
    closed_form_loo(masks, np.ones((2, 2)), loo)  # NaN marks "not in this draw's training set"
    loo[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"loo_margin holds 1 NaN entries \(first: model 1, point 1\)"):
        closed_form_loo(masks, np.ones((2, 2)), loo)


# ----------------------------------------------------------------------------- rescoring


def test_rescored_with_unit_weights_is_the_score_and_a_weight_counts_a_model_twice():
    scores = subsampled(SUB_MASKS, SUB_MARGINS)
    np.testing.assert_allclose(scores.rescored(np.ones(4)), scores.score, atol=1e-7)
    # Weight 2 on model 0 is the ensemble with model 0 listed twice.
    doubled = subsampled(np.vstack([SUB_MASKS, SUB_MASKS[:1]]), np.vstack([SUB_MARGINS, SUB_MARGINS[:1]]))
    np.testing.assert_allclose(scores.rescored(np.array([2.0, 1, 1, 1])), doubled.score, atol=1e-7)
    np.testing.assert_allclose(fractional(scores).rescored(np.ones(4)), fractional(scores).score, atol=1e-7)
    np.testing.assert_allclose(scores.at([2, 0]).rescored(np.ones(4)), scores.score[[2, 0]], atol=1e-7)


def test_a_point_left_without_its_out_models_rescores_to_nan():
    scores = subsampled(SUB_MASKS, SUB_MARGINS)
    # Point 1 is out of model 1 only: with model 1 at weight 0 its P_out does not exist.
    assert np.isnan(scores.rescored(np.array([1.0, 0, 1, 1]))[1])


def test_exact_loo_resamples_the_base_models_and_each_targets_models_as_pools():
    plan = loo_plan(3, [0, 2], models_per_target=2)
    margins = np.ones((6, 3))
    scores = exact_loo(plan.masks, margins, plan.left_out)
    assert scores.model_groups.tolist() == [-1, -1, 0, 0, 2, 2]
    closed = closed_form_loo(np.ones((4, 3), dtype=bool), np.ones((4, 3)), -np.ones((4, 3)))
    assert closed.model_groups.tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(closed.rescored(np.array([3.0, 0, 1, 0])), [1.0, 1.0, 1.0])


def test_exact_loo_on_subsets_counts_only_the_subsets_that_hold_the_target():
    """A model right exactly on its own training points memorizes every target fully (score 1);
    P_in counts only the subset models that hold the target, as many as the subsets that do."""
    targets = np.array([2, 9, 11])
    plan = loo_plan_on_subsets(30, targets, draws=12, rate=0.6, seed=0)
    margins = np.where(plan.masks, 1.0, -1.0).astype(np.float32)
    scores = exact_loo(plan.masks, margins, plan.left_out, targets)
    assert np.allclose(scores.score, 1.0)
    holding = plan.masks[plan.left_out == -1][:, targets].sum(0)
    assert (scores.n_in == holding).all() and (scores.n_out == holding).all()
