"""Hypothesis-driven toy checks: properties that must hold on synthetic sub-populations where the
truth is known (``harness.toy``), for every structure hypothesis draws.

Each example draws a long-tailed data set (classes, sub-populations, tail exponent,
singletons, separation, spread, seed) and scores it with the ridge family. Each property is
checked at a family-wise level of 1 % over the profile's examples (alpha = 0.01 / max_examples
per example, Bonferroni), so a failure is evidence, not noise; hypothesis shrinks and prints the
failing structure. An example a property does not apply to (too few points of a kind) is
discarded with ``assume``, not passed. ``tests/test_toy_power.py`` plants an estimator bug and
shows these checks catch it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from harness import toy
from harness.data import synthetic
from harness.profiles import FZ20_RATE
from harness.toy import separated_structures

@given(separated_structures)
def test_subsampled_scores_match_paired_loo_at_their_own_training_size(store, spec):
    toy.check_subsampled_matches_paired_loo(toy.score_structure(spec, FZ20_RATE, store), toy.alpha_per_example())


@given(separated_structures)
def test_small_subpopulations_are_not_underestimated_and_error_does_not_rise_with_rate(store, spec):
    low = toy.score_structure(spec, 0.5, store)
    assume((low.bins == "small").sum() >= toy.MIN_POINTS)
    toy.check_small_not_underestimated(low, toy.alpha_per_example())
    toy.check_error_does_not_rise_with_rate(low, toy.score_structure(spec, 0.9, store), toy.alpha_per_example())


@given(separated_structures)
def test_leaving_out_a_point_of_a_large_subpopulation_changes_nothing(store, spec):
    scored = toy.score_structure(spec, FZ20_RATE, store)
    assume((scored.bins == "large").sum() >= toy.MIN_POINTS)
    toy.check_large_score_nothing(scored, toy.alpha_per_example())


@given(separated_structures, st.integers(toy.MIN_POINTS, 20))
def test_a_point_with_an_exact_copy_in_the_training_set_is_not_memorized(store, spec, copies):
    data, copied = toy.with_duplicates(synthetic(spec), copies, seed=spec.seed)
    toy.check_duplicates_score_nothing(toy.loo_at_full_size(data, store), copied, toy.alpha_per_example())


@given(separated_structures)
def test_reordering_the_training_points_reorders_the_scores(store, spec):
    data = synthetic(spec)
    reordered, order = toy.permuted(data, seed=spec.seed)
    toy.check_permutation_equivariant(toy.loo_at_full_size(data, store), toy.loo_at_full_size(reordered, store),
                                      np.asarray(order))
