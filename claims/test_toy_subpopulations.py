"""Hypothesis-driven toy checks: properties that must hold on synthetic sub-populations
where the truth is known, for every structure hypothesis draws.

Each example draws a long-tailed data set (classes, sub-populations, tail exponent,
singletons, separation, spread, seed) and scores it with the ridge family: exact LOO in
closed form over ``LOO_DRAWS`` random-feature draws, and Feldman & Zhang's estimate from
``SUBSAMPLED_MODELS`` models. Each property is checked at a family-wise level of 1 % over
the profile's examples (alpha = 0.01 / max_examples per example, Bonferroni), so a
failure is evidence, not noise; hypothesis shrinks and prints the failing structure.

1. A well-separated singleton has no neighbours to lose, so its subsampled score matches
   its LOO score: their intervals (each at level alpha / number of singletons) overlap.
2. Small sub-populations (2-10) are not underestimated (the interval of their mean error
   reaches 0 or above), and raising r from 0.5 to 0.9 does not raise their error.
3. Leaving one point out of a large sub-population (> 10) changes nothing: the upper bound
   of the mean LOO score of its members is below ``NOTHING`` (5 accuracy points).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import estimators, stats
from harness.data import SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.masks import full_plan, subsampled_plan
from harness.profiles import FZ20_RATE, size_bin
from harness.train import RidgeSpec

TOY_RIDGE = RidgeSpec(features=256, models_per_pass=100)
LOO_DRAWS = 40
SUBSAMPLED_MODELS = 80
NOTHING = 0.05
FAMILY_ALPHA = 0.01
MIN_POINTS = 5  # a bootstrap over points needs enough of them to carry each point's own noise

separated_structures = st.builds(
    SubpopulationSpec,
    num_classes=st.integers(2, 4), dim=st.just(16), subpops_per_class=st.integers(3, 6),
    largest=st.integers(20, 40), tail_exponent=st.floats(1.0, 2.5),
    singletons_per_class=st.integers(1, 4), separation=st.floats(1.2, 2.0),
    spread=st.floats(0.2, 0.4), test_ratio=st.just(0.2), seed=st.integers(0, 10**6))


def _alpha() -> float:
    return FAMILY_ALPHA / settings.default.max_examples


def _scores(spec, rate, store):
    data = synthetic(spec)
    loo_ensemble = train_ensemble(data, TOY_RIDGE, full_plan(data.n_train, LOO_DRAWS), store, progress=False)
    loo = estimators.closed_form_loo(loo_ensemble.masks, loo_ensemble.arrays["train_margin"],
                                     loo_ensemble.arrays["loo_margin"])
    sub_ensemble = train_ensemble(data, TOY_RIDGE, subsampled_plan(data.n_train, SUBSAMPLED_MODELS, rate),
                                  store, progress=False)
    sub = estimators.subsampled(sub_ensemble.masks, sub_ensemble.arrays["train_margin"])
    return data, loo, sub, size_bin(data.group_size_train)


@given(separated_structures)
def test_separated_singletons_score_the_same_under_both_estimators(store, spec):
    data, loo, sub, bins = _scores(spec, FZ20_RATE, store)
    singletons = np.flatnonzero(bins == "singleton")
    alpha = _alpha() / len(singletons)
    _, loo_low, loo_high = stats.newcombe_difference(loo.correct_in[singletons], loo.n_in[singletons],
                                                     loo.correct_out[singletons], loo.n_out[singletons], alpha)
    _, sub_low, sub_high = stats.newcombe_difference(sub.correct_in[singletons], sub.n_in[singletons],
                                                     sub.correct_out[singletons], sub.n_out[singletons], alpha)
    apart = (sub_low > loo_high) | (loo_low > sub_high)
    assert not apart.any(), (
        f"singletons {singletons[apart].tolist()}: subsampled {sub.score[singletons][apart].round(3).tolist()} "
        f"vs LOO {loo.score[singletons][apart].round(3).tolist()}, intervals disjoint")


@given(separated_structures)
def test_small_subpopulations_are_not_underestimated_and_error_falls_with_rate(store, spec):
    data, loo, low_rate, bins = _scores(spec, 0.5, store)
    _, _, high_rate, _ = _scores(spec, 0.9, store)
    small = bins == "small"
    if small.sum() < MIN_POINTS:
        return
    error_low = (low_rate.score - loo.score)[small]
    error_high = (high_rate.score - loo.score)[small]
    level = stats.bootstrap_mean(error_low, alpha=_alpha())
    assert level.upper >= 0, f"small sub-populations underestimated at r=0.5: {level}"
    change = stats.bootstrap_difference(error_high, error_low, alpha=_alpha(), paired=True)
    assert change.lower <= 0, f"error of small sub-populations rose from r=0.5 to r=0.9: {change}"


@given(separated_structures)
def test_leaving_out_a_point_of_a_large_subpopulation_changes_nothing(store, spec):
    data, loo, _, bins = _scores(spec, FZ20_RATE, store)
    large = loo.score[bins == "large"]
    if len(large) < MIN_POINTS:
        return
    interval = stats.bootstrap_mean(large, alpha=_alpha())
    assert interval.upper < NOTHING, (
        f"large sub-populations: mean LOO memorization {interval.estimate:.3f} "
        f"[{interval.lower:.3f}, {interval.upper:.3f}] reaches {NOTHING}")
