"""Toy properties: what memorization estimators must do on synthetic sub-populations, where the
truth is known. Each ``check_*`` raises AssertionError with the evidence when its property is
violated; ``claims/test_toy_subpopulations.py`` runs them on every structure hypothesis draws,
and ``tests/test_toy_power.py`` shows that a planted estimator bug makes one fail.

A property is violated when the data show the violation at level ``alpha`` (the claim tests
pass alpha = 0.01 / examples, Bonferroni over the examples): an interval wholly beyond a
tolerance, not a point estimate a hair past it. Tolerances say how near "near" is:
``TOLERANCE`` = 0.1 (a tenth of the score's range) for agreement, ``NOTHING`` = 0.05 for "no
memorization". Every property has power against a wrong estimator: the subsampled estimator
with P_out taken over every model (in and out) scores a singleton (1 - r) times its true
score, and its singletons then disagree with paired LOO by about half the score range.

- :func:`check_subsampled_matches_paired_loo`: FZ20's estimate at rate r estimates memorization
  for a training set of size r n. Each subsampled model's own exact LOO (the ridge family's
  closed form, on the same draws: *paired LOO at size r n*) estimates the same thing, so in
  every size bin the mean of subsampled - paired LOO is within TOLERANCE of 0.
- :func:`check_small_not_underestimated` and :func:`check_error_does_not_rise_with_rate`: the
  subsampled estimator's error against LOO at size n, on small sub-populations (2-10).
- :func:`check_large_score_nothing`: leaving one point of a large sub-population (> 10) out
  changes nothing: the mean LOO score of its members is below NOTHING.
- :func:`check_duplicates_score_nothing`: a point whose exact copy stays in the training set
  loses nothing when left out: the mean LOO score of duplicated points is below NOTHING.
- :func:`check_permutation_equivariant`: reordering the training points reorders the scores
  and changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st

from harness import estimators, stats
from harness.data import Dataset, SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.masks import full_plan, subsampled_plan
from harness.profiles import size_bin
from harness.store import Store
from harness.train import RidgeSpec

FAMILY_ALPHA = 0.01  # each property's family-wise level over a profile's examples

# Long-tailed data sets whose sub-populations are separated enough for every property to apply.
separated_structures = st.builds(
    SubpopulationSpec,
    num_classes=st.integers(2, 4), dim=st.just(16), subpops_per_class=st.integers(3, 6),
    largest=st.integers(20, 40), tail_exponent=st.floats(1.0, 2.5),
    singletons_per_class=st.integers(1, 4), separation=st.floats(1.2, 2.0),
    spread=st.floats(0.2, 0.4), test_ratio=st.just(0.2), seed=st.integers(0, 10**6))


def alpha_per_example() -> float:
    """``FAMILY_ALPHA`` split over the active hypothesis profile's examples (Bonferroni)."""
    return FAMILY_ALPHA / settings.default.max_examples


TOY_RIDGE = RidgeSpec(features=256, models_per_pass=100)
LOO_DRAWS = 40
SUBSAMPLED_MODELS = 80
TOLERANCE = 0.1
NOTHING = 0.05
MIN_POINTS = 5  # a bootstrap over points needs enough of them to carry each point's own noise


@dataclass(frozen=True, eq=False)
class Scored:
    """One data set scored three ways: exact LOO at size n, subsampled at rate r, and paired LOO
    at size r n (each subsampled model's closed-form refit without the point)."""

    data: Dataset
    loo: estimators.MemorizationScores
    subsampled: estimators.MemorizationScores
    paired: estimators.MemorizationScores
    bins: np.ndarray


def loo_at_full_size(data: Dataset, store: Store, seed: int = 0) -> estimators.MemorizationScores:
    ensemble = train_ensemble(data, TOY_RIDGE, full_plan(data.n_train, LOO_DRAWS), store, seed, progress=False)
    return estimators.closed_form_loo(ensemble.masks, ensemble.arrays["train_margin"], ensemble.arrays["loo_margin"])


def score(data: Dataset, rate: float, store: Store, seed: int = 0) -> Scored:
    ensemble = train_ensemble(data, TOY_RIDGE, subsampled_plan(data.n_train, SUBSAMPLED_MODELS, rate, seed), store,
                              seed, progress=False)
    margins = ensemble.arrays["train_margin"]
    return Scored(data, loo_at_full_size(data, store, seed), estimators.subsampled(ensemble.masks, margins),
                  estimators.closed_form_loo(ensemble.masks, margins, ensemble.arrays["loo_margin"]),
                  size_bin(data.group_size_train))


def score_structure(spec: SubpopulationSpec, rate: float, store: Store) -> Scored:
    return score(synthetic(spec), rate, store)


def _beyond(interval, tolerance: float) -> bool:
    return interval.lower > tolerance or interval.upper < -tolerance


def check_subsampled_matches_paired_loo(scored: Scored, alpha: float) -> None:
    for name in np.unique(scored.bins):
        members = scored.bins == name
        difference = (scored.subsampled.score - scored.paired.score)[members]
        difference = difference[np.isfinite(difference)]
        if len(difference) < MIN_POINTS:
            continue
        interval = stats.bootstrap_mean(difference, alpha=alpha)
        assert not _beyond(interval, TOLERANCE), (
            f"{name} points: subsampled minus paired LOO at size r n averages {interval.estimate:.3f} "
            f"[{interval.lower:.3f}, {interval.upper:.3f}], beyond +-{TOLERANCE}")


def check_small_not_underestimated(scored: Scored, alpha: float) -> None:
    small = scored.bins == "small"
    level = stats.bootstrap_mean((scored.subsampled.score - scored.loo.score)[small], alpha=alpha)
    assert level.upper >= 0, f"small sub-populations underestimated: {level}"


def check_error_does_not_rise_with_rate(low: Scored, high: Scored, alpha: float) -> None:
    small = low.bins == "small"
    error_low = (low.subsampled.score - low.loo.score)[small]
    error_high = (high.subsampled.score - high.loo.score)[small]
    change = stats.bootstrap_difference(error_high, error_low, alpha=alpha, paired=True)
    assert change.lower <= 0, f"error of small sub-populations rose from the lower to the higher rate: {change}"


def check_large_score_nothing(scored: Scored, alpha: float) -> None:
    interval = stats.bootstrap_mean(scored.loo.score[scored.bins == "large"], alpha=alpha)
    assert interval.lower < NOTHING, (
        f"large sub-populations: mean LOO memorization {interval.estimate:.3f} "
        f"[{interval.lower:.3f}, {interval.upper:.3f}] lies above {NOTHING}")


def with_duplicates(data: Dataset, count: int, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """``data`` with exact copies of ``count`` random training points appended (same label and
    sub-population), and a mask of every point that has a copy."""
    chosen = np.random.default_rng(seed).choice(data.n_train, count, replace=False)
    index = torch.as_tensor(chosen)
    groups = None if data.group_train is None else np.concatenate([data.group_train, data.group_train[chosen]])
    mislabeled = (None if data.mislabeled_train is None else
                  np.concatenate([data.mislabeled_train, data.mislabeled_train[chosen]]))
    doubled = replace(data, name=f"{data.name}+{count} copies",
                      x_train=torch.cat([data.x_train, data.x_train[index]]),
                      y_train=torch.cat([data.y_train, data.y_train[index]]),
                      group_train=groups, mislabeled_train=mislabeled)
    copied = np.zeros(doubled.n_train, dtype=bool)
    copied[chosen] = True
    copied[data.n_train:] = True
    return doubled, copied


def check_duplicates_score_nothing(loo: estimators.MemorizationScores, copied: np.ndarray, alpha: float) -> None:
    interval = stats.bootstrap_mean(loo.score[copied], alpha=alpha)
    assert interval.lower < NOTHING, (
        f"points with an exact copy: mean LOO memorization {interval.estimate:.3f} "
        f"[{interval.lower:.3f}, {interval.upper:.3f}] lies above {NOTHING}")


def permuted(data: Dataset, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """``data`` with its training points reordered, and the order (new position j holds old order[j])."""
    order = np.random.default_rng(seed).permutation(data.n_train)
    index = torch.as_tensor(order)
    take = lambda a: None if a is None else np.asarray(a)[order]  # noqa: E731
    return replace(data, name=f"{data.name} reordered", x_train=data.x_train[index], y_train=data.y_train[index],
                   group_train=take(data.group_train), mislabeled_train=take(data.mislabeled_train)), order


def check_permutation_equivariant(loo: estimators.MemorizationScores, loo_permuted: estimators.MemorizationScores,
                                  order: np.ndarray) -> None:
    # Float32 ridge solves in another row order move margins by rounding: a margin at 0 may flip.
    moved = np.abs(loo_permuted.score - loo.score[order])
    assert moved.max() <= 2.0 / LOO_DRAWS, (
        f"reordering the training points moved {int((moved > 0).sum())} scores, up to {moved.max():.3f}")
