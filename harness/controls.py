"""Negative controls: the claim's own pipeline with the thing the claim is about destroyed.

Each claim test computes its decisive statistic twice: once on the data, once with the
claim's effect taken out, and decides both against the same threshold
(:class:`harness.verdict.Control`). Where the effect is gone the control's statistic sits at
the threshold's boundary (or on the wrong side of it), so a supported control says the test
answers to something other than the claim: the case fails with "the test cannot tell these
apart". Every control keeps what the claim is not about (how many points, which models,
which sub-population sizes) and breaks only the link the claim asserts:

| claim | what the control destroys | how |
|---|---|---|
| approx-overestimates, error-is-subpopulation | the link between a point's sub-population size and its error | size bins shuffled among the scored points |
| fz-long-tail | the link between being atypical and scoring high | atypical flags shuffled among the training points |
| fractional-definition | which points are truly memorized | the truth shuffled among the real points |
| mem-gen-anticorrelated | which test accuracy belongs to which configuration | accuracies shuffled across configurations |
| sampling-rate-bias | the change of rate | the lowest rate against itself: two disjoint halves of its models |
| grouped-leave-out | the grouped design | FZ20's subsampled estimator in its place (biased on small sub-populations, IMN25 4.2) |
| leakage | the near-duplicates | the clean test points of a random half of the sub-populations posing as the leaked ones |
| removal-shifts-distribution | which sub-populations are purged | purged and stand-in sub-populations (unpurged, same size bins) shuffled within size bins |
| fz-marginal-utility, threshold-dependence | the memorization scores | a second random set of the same count in place of the selected one |
| removal-harmless | the harmlessness of what is removed | as many points taken as whole sub-populations that have test points (a purge, which costs accuracy) |

Shuffles and draws are seeded from the run's ``--seed``, on a stream of their own.
"""

from __future__ import annotations

import numpy as np

from harness.data import UNKNOWN_GROUP, Dataset
from harness.profiles import size_bin

CONTROL_STREAM = 7919  # keeps control draws apart from every other draw made from the same seed


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, CONTROL_STREAM])


def shuffled(values, seed: int = 0):
    """``values`` in a random order: the same values, no longer tied to their points (a list
    for a list or tuple, an array otherwise)."""
    order = rng(seed).permutation(len(values))
    if isinstance(values, (list, tuple)):
        return [values[i] for i in order]
    return np.asarray(values)[order]


def shuffled_within(values, strata, seed: int = 0) -> np.ndarray:
    """``values`` shuffled within each stratum: each stratum keeps its values, no longer tied to
    their items."""
    values, strata = np.asarray(values), np.asarray(strata)
    out = values.copy()
    generator = rng(seed)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        out[members] = values[generator.permutation(members)]
    return out


def group_bins(dataset: Dataset, groups) -> np.ndarray:
    """The size bin of each sub-population id (by its training members)."""
    ids, counts = np.unique(dataset.group_train[dataset.group_train != UNKNOWN_GROUP], return_counts=True)
    sizes = dict(zip(ids.tolist(), counts.tolist()))
    return size_bin(np.array([sizes.get(int(g), 0) for g in groups], dtype=np.int64))


def random_half(n: int, seed: int = 0) -> np.ndarray:
    """A bool mask of floor(n / 2) of ``n`` items drawn at random."""
    if n < 2:
        raise ValueError(f"cannot split {n} item(s) into two halves")
    half = np.zeros(n, dtype=bool)
    half[rng(seed).choice(n, n // 2, replace=False)] = True
    return half


def random_half_of_groups(groups, among: np.ndarray, seed: int = 0) -> np.ndarray:
    """A bool mask over the points: those of a random half of the sub-populations with points in
    ``among`` (points of unknown sub-population count as their own)."""
    groups = np.full(len(among), UNKNOWN_GROUP) if groups is None else np.asarray(groups)
    ids = np.where(groups == UNKNOWN_GROUP, -1 - np.arange(len(groups)), groups)
    present = np.unique(ids[among])
    return np.isin(ids, present[random_half(len(present), seed)])


def stand_in_groups(dataset: Dataset, purged: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each purged sub-population, an unpurged one of the same size bin that has test points,
    drawn without replacement (fewer when a bin runs out)."""
    if dataset.group_train is None or dataset.group_test is None:
        raise ValueError(f"{dataset.name} has no sub-population ids")
    candidates = np.setdiff1d(np.unique(dataset.group_test[dataset.group_test != UNKNOWN_GROUP]), purged)
    candidate_bins, purged_bins = group_bins(dataset, candidates), group_bins(dataset, purged)
    generator = rng(seed)
    chosen = []
    for wanted in np.unique(purged_bins):
        pool = candidates[candidate_bins == wanted]
        chosen += list(generator.choice(pool, min(int((purged_bins == wanted).sum()), len(pool)), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def purging_selection(dataset: Dataset, count: int, exclude: np.ndarray, seed: int = 0) -> np.ndarray:
    """``count`` training points taken as whole sub-populations (random order, the last one
    possibly in part) among those with test points, none of them in ``exclude``: a removal that
    shifts the test distribution, so it should cost accuracy."""
    if dataset.group_train is None or dataset.group_test is None:
        raise ValueError(f"{dataset.name} has no sub-population ids")
    groups = dataset.group_train
    candidates = np.unique(dataset.group_test[dataset.group_test != UNKNOWN_GROUP])
    chosen = np.zeros(dataset.n_train, dtype=bool)
    for group in rng(seed).permutation(candidates):
        members = np.flatnonzero((groups == group) & ~exclude)
        take = members[:count - int(chosen.sum())]
        chosen[take] = True
        if chosen.sum() >= count:
            break
    return chosen
