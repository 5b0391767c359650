"""Removal experiments: the marginal utility of a set of training points (FZ20, as IMN25 3.3 describes it).

The marginal utility of a set R of training points is the mean test accuracy of M models
trained on S minus that of M models trained on S \\ R:

    utility(R) = mean_k acc(h_k^S) - mean_k acc(h_k^{S \\ R}),      k = 1 .. M.

Both arms are full-plan ensembles (:func:`harness.masks.full_plan`) trained through
:func:`harness.ensemble.train_ensemble`, so the store keys each reduced set by its content and
an arm asked for twice (by two claims, or by two thresholds selecting the same points) is
trained once. Model k of every arm gets the same training seed (the plan's seeds depend on the
seed and plan kind only), so (acc(h_k^S), acc(h_k^{S \\ R})) are pairs, and every interval here
is a percentile bootstrap over model indices k, resampling the pairs (or, for a statistic of
several arms, the rows k of all arms) jointly:

    drop(R)            = utility(R) on the whole test split       (stats.bootstrap_difference, paired)
    drop(R; T)         = the same on a subset T of the test points (or a weighting of them)
    contrast(R; T, U)  = drop(R; T) - drop(R; U)                  (stats.bootstrap_mean over k)
    range(R_1 .. R_J)  = max_j utility(R_j) - min_j utility(R_j)  (joint bootstrap over k)

A sub-population g is *purged* by R when every training point of g is in R; its test points
are the ones a purge shifts the distribution for (IMN25 4.3).

Points are selected from memorization scores (:func:`selection_scores`): FZ20's subsampled
estimator (at FZ20's r = 0.7 unless told otherwise), or exact leave-one-out (ridge: closed form
for every point; MLP: a LOO plan over given targets). :func:`removal_experiment` removes the
points with score >= theta and, for comparison, as many random points and as many of the
lowest-scoring points of large sub-populations (IMN25 4.3's counter-example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness import estimators, stats
from harness.data import UNKNOWN_GROUP, Dataset
from harness.ensemble import train_ensemble
from harness.experiments import loo_scores, subsampled_scores
from harness.masks import full_plan, loo_plan
from harness.profiles import SIZE_BINS, Profile
from harness.store import Store
from harness.verdict import Statistic

FZ20_RATE = 0.7  # FZ20's sampling rate r for the subsampled estimator
ARMS = ("memorized", "random", "low-score large")
FULL_ARM = "none"  # the row of S itself in tables


# ----------------------------------------------------------------------------- scores


def selection_scores(dataset: Dataset, spec, profile: Profile, store: Store, device: str = "cpu",
                     seed: int = 0, rate: float | None = FZ20_RATE, targets=None) -> tuple[np.ndarray, int]:
    """A memorization score per training point (NaN where not scored) and the models behind it.

    ``rate`` given: FZ20's subsampled estimator at that sampling rate (FZ20: 0.7) with
    ``profile.subsampled_models`` models, every point. ``rate=None``: exact leave-one-out; the
    ridge family scores every point in closed form, the MLP only ``targets`` (a LOO plan of
    ``profile.loo_models_per_target`` models per target). With ``targets``, points outside them
    get NaN and are never selected.
    """
    scores = np.full(dataset.n_train, np.nan)
    if rate is not None:
        if targets is not None:
            raise ValueError("targets apply to exact LOO (rate=None) only; the subsampled estimator "
                             "scores every point")
        found, ensemble = subsampled_scores(dataset, spec, rate, profile.subsampled_models, store,
                                            device, seed)
    elif spec.family == "ridge":
        found, ensemble = loo_scores(dataset, spec, profile, store, device, seed)
    else:
        if targets is None:
            raise ValueError(f"exact LOO of every point needs the ridge family's closed form; for the "
                             f"{spec.family} family pass the targets to score")
        plan = loo_plan(dataset.n_train, targets, profile.loo_models_per_target)
        ensemble = train_ensemble(dataset, spec, plan, store, seed, device)
        found = estimators.exact_loo(ensemble.masks, ensemble.arrays["train_margin"], plan.left_out)
    scores[found.points] = found.score
    if targets is not None:
        outside = np.ones(dataset.n_train, dtype=bool)
        outside[np.asarray(targets, dtype=np.int64)] = False
        scores[outside] = np.nan
    return scores, ensemble.n_models


def describe_scores(rate: float | None, models: int) -> str:
    """How the selection scores were computed, for a report's notes."""
    method = f"FZ20's subsampled estimator at r={rate}" if rate is not None else "exact leave-one-out"
    return f"scores: {method} ({models} models)"


# ----------------------------------------------------------------------------- selections


def select_above(scores, threshold: float) -> np.ndarray:
    """Points with score >= threshold (NaN scores are never selected)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    if np.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    with np.errstate(invalid="ignore"):
        return scores >= threshold


def random_selection(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` of ``n`` points drawn uniformly without replacement, as a bool mask."""
    if not 0 <= count <= n:
        raise ValueError(f"cannot draw {count} of {n} points; count must lie in 0..{n}")
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, count, replace=False)] = True
    return chosen


def low_score_large_selection(scores, group_sizes, count: int) -> np.ndarray:
    """The ``count`` lowest-scoring points of large sub-populations (fewer if there are fewer).

    Large is ``SIZE_BINS["large"]`` (11 or more training points); ties keep index order.
    """
    scores = np.asarray(scores, dtype=float)
    group_sizes = np.asarray(group_sizes)
    if scores.shape != group_sizes.shape or scores.ndim != 1:
        raise ValueError(f"scores and group_sizes must be 1-D of equal length, got {scores.shape} "
                         f"and {group_sizes.shape}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    low, high = SIZE_BINS["large"]
    eligible = np.flatnonzero((group_sizes >= low) & (group_sizes <= high) & ~np.isnan(scores))
    order = eligible[np.argsort(scores[eligible], kind="stable")]
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[order[:count]] = True
    return chosen


# ----------------------------------------------------------------------------- intervals


def bootstrap_over_models(per_model: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray],
                          alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Percentile bootstrap of ``reduce(column means)``, resampling the rows (models) jointly.

    ``per_model`` is (M models, J quantities); ``reduce`` maps a (B, J) array of column means to
    (B,) values, e.g. the range across columns.
    """
    per_model = np.asarray(per_model, dtype=float)
    if per_model.ndim != 2 or len(per_model) < 2:
        raise ValueError(f"per_model must be (models >= 2, quantities), got shape {per_model.shape}")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(per_model), size=(n_boot, len(per_model)))
    replicates = reduce(per_model[rows].mean(axis=1))
    estimate = float(reduce(per_model.mean(axis=0, keepdims=True))[0])
    lower, upper = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return stats.Interval(estimate, float(lower), float(upper), len(per_model),
                          f"joint bootstrap percentile over models ({n_boot} resamples)")


def statistic(name: str, interval: stats.Interval, note: str = "") -> Statistic:
    """A removal interval (over models) as a verdict Statistic."""
    return Statistic(name, interval.estimate, interval.lower, interval.upper, interval.n, "models", note)


# ----------------------------------------------------------------------------- experiment


@dataclass(frozen=True, eq=False)
class RemovalArm:
    """Models trained on S minus ``removed``: their correctness on every test point."""

    name: str
    removed: np.ndarray        # bool (n_train,)
    test_correct: np.ndarray   # bool (M models, n_test)


@dataclass(frozen=True, eq=False)
class MarginalUtility:
    """Models on S (``full_correct``) and on S minus each arm's points, on the same test split."""

    dataset: Dataset
    full_correct: np.ndarray   # bool (M models, n_test)
    arms: dict
    models: int                # models behind the result, all arms and S together
    seed: int = 0

    def arm(self, name: str) -> RemovalArm:
        if name not in self.arms:
            raise ValueError(f"no arm {name!r}; arms: {sorted(self.arms)}")
        return self.arms[name]

    def _test_weights(self, test_points) -> np.ndarray:
        """Test points as weights summing to 1: None is every point, a bool mask its points
        equally, a float array (>= 0) its own weights (e.g. to reweight a test split's mix)."""
        if test_points is None:
            test_points = np.ones(self.dataset.n_test, dtype=bool)
        weights = np.asarray(test_points)
        if weights.shape != (self.dataset.n_test,) or not (weights.dtype == np.bool_ or
                                                            np.issubdtype(weights.dtype, np.floating)):
            raise ValueError(f"test_points must be a bool mask or float weights of shape ({self.dataset.n_test},), "
                             f"got {weights.dtype} {weights.shape}")
        weights = weights.astype(float)
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("test point weights must be finite and >= 0")
        if weights.sum() == 0:
            raise ValueError("test_points selects no test point")
        return weights / weights.sum()

    def per_model_accuracy(self, name: str | None = None, test_points=None) -> np.ndarray:
        """Accuracy of each model on the chosen test points; ``name=None`` is S itself."""
        correct = self.full_correct if name is None else self.arm(name).test_correct
        return correct @ self._test_weights(test_points)

    def per_model_drop(self, name: str, test_points=None) -> np.ndarray:
        """acc(h_k^S) - acc(h_k^{S minus R}) for each model index k."""
        return self.per_model_accuracy(None, test_points) - self.per_model_accuracy(name, test_points)

    def accuracy(self, name: str | None = None, test_points=None) -> stats.Interval:
        return stats.bootstrap_mean(self.per_model_accuracy(name, test_points), seed=self.seed)

    def drop(self, name: str, test_points=None) -> stats.Interval:
        """Marginal utility of the arm's points: the accuracy lost by removing them."""
        return stats.bootstrap_difference(self.per_model_accuracy(None, test_points),
                                          self.per_model_accuracy(name, test_points),
                                          seed=self.seed, paired=True)

    def drop_contrast(self, name: str, test_points, other_test_points) -> stats.Interval:
        """drop on ``test_points`` minus drop on ``other_test_points``, paired over models."""
        return stats.bootstrap_mean(self.per_model_drop(name, test_points)
                                    - self.per_model_drop(name, other_test_points), seed=self.seed)

    def drop_range(self, names: list[str]) -> stats.Interval:
        """max minus min of the arms' drops, with a joint bootstrap over models.

        The maximum of noisy estimates is biased upward, so under equal true drops this
        estimate is still above 0 by about the spread of the noise.
        """
        if len(names) < 2:
            raise ValueError(f"a range needs at least two arms, got {names}")
        per_model = np.column_stack([self.per_model_drop(name) for name in names])
        return bootstrap_over_models(per_model, lambda means: means.max(axis=1) - means.min(axis=1),
                                     seed=self.seed)

    def purged_groups(self, name: str) -> np.ndarray:
        """Sub-populations whose every training point the arm removes."""
        groups = self.dataset.group_train
        if groups is None:
            return np.array([], dtype=np.int64)
        removed = self.arm(name).removed
        known = groups != UNKNOWN_GROUP
        touched = np.unique(groups[known & removed])
        kept = np.unique(groups[known & ~removed])
        return np.setdiff1d(touched, kept)

    def purged_test_points(self, name: str) -> np.ndarray:
        """Test points whose sub-population the arm purges (bool over the test split)."""
        if self.dataset.group_test is None:
            return np.zeros(self.dataset.n_test, dtype=bool)
        return np.isin(self.dataset.group_test, self.purged_groups(name))

    def by_subpopulation(self, name: str) -> pd.DataFrame:
        """One row per test sub-population: training size, points removed, purged, accuracies, drop."""
        groups_test, groups_train = self.dataset.group_test, self.dataset.group_train
        if groups_test is None or groups_train is None:
            raise ValueError(f"{self.dataset.name} has no sub-population ids")
        removed = self.arm(name).removed
        purged = set(self.purged_groups(name).tolist())
        arm_correct = self.arm(name).test_correct
        rows = []
        for group in np.unique(groups_test[groups_test != UNKNOWN_GROUP]).tolist():
            tests = groups_test == group
            members = groups_train == group
            before = float(self.full_correct[:, tests].mean())
            after = float(arm_correct[:, tests].mean())
            rows.append({"group": group, "train_size": int(members.sum()),
                         "removed": int((members & removed).sum()), "purged": group in purged,
                         "test_points": int(tests.sum()), "accuracy_full": before,
                         "accuracy_removed": after, "drop": before - after})
        return pd.DataFrame(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """One row for S and one per arm: points removed, purged sub-populations, accuracy, drop."""
        full = self.accuracy()
        rows = [{"arm": FULL_ARM, "removed": 0, "purged_subpopulations": 0,
                 "accuracy": full.estimate, "accuracy_lower": full.lower, "accuracy_upper": full.upper,
                 "drop": 0.0, "drop_lower": 0.0, "drop_upper": 0.0}]
        for name, arm in self.arms.items():
            accuracy, drop = self.accuracy(name), self.drop(name)
            rows.append({"arm": name, "removed": int(arm.removed.sum()),
                         "purged_subpopulations": len(self.purged_groups(name)),
                         "accuracy": accuracy.estimate, "accuracy_lower": accuracy.lower,
                         "accuracy_upper": accuracy.upper, "drop": drop.estimate,
                         "drop_lower": drop.lower, "drop_upper": drop.upper})
        return pd.DataFrame(rows).set_index("arm")


def marginal_utility(dataset: Dataset, spec, removals: dict, models: int, store: Store,
                     device: str = "cpu", seed: int = 0) -> MarginalUtility:
    """Train M models on S and M on S minus each named set of points (bool masks over training points)."""
    if not removals:
        raise ValueError("removals is empty: name at least one set of training points to remove")
    full = train_ensemble(dataset, spec, full_plan(dataset.n_train, models), store, seed, device)
    total = full.n_models
    arms = {}
    for name, removed in removals.items():
        removed = np.asarray(removed)
        if removed.shape != (dataset.n_train,) or removed.dtype != np.bool_:
            raise ValueError(f"arm {name!r}: removal must be a bool mask of shape ({dataset.n_train},), "
                             f"got {removed.dtype} {removed.shape}")
        if removed.all():
            raise ValueError(f"arm {name!r} removes every training point; nothing would be left to train on")
        if not removed.any():
            arms[name] = RemovalArm(name, removed, full.test_correct)  # S itself: same models
            continue
        reduced = dataset.without(removed, name_suffix=f" minus {int(removed.sum())}")
        ensemble = train_ensemble(reduced, spec, full_plan(reduced.n_train, models), store, seed, device)
        arms[name] = RemovalArm(name, removed, ensemble.test_correct)
        total += ensemble.n_models
    return MarginalUtility(dataset, full.test_correct, arms, total, seed)


def removal_experiment(dataset: Dataset, spec, scores, threshold: float, models: int, store: Store,
                       device: str = "cpu", seed: int = 0, arms: tuple = ARMS) -> MarginalUtility:
    """FZ20's removal of the points with score >= threshold, beside the requested comparison arms.

    Arms: ``"memorized"`` (score >= threshold), ``"random"`` (as many uniformly drawn points,
    seeded by ``seed``) and ``"low-score large"`` (as many of the lowest-scoring points of large
    sub-populations, or all of them if there are fewer).
    """
    unknown = set(arms) - set(ARMS)
    if unknown or "memorized" not in arms:
        raise ValueError(f"arms must include 'memorized' and come from {ARMS}, got {arms}")
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (dataset.n_train,):
        raise ValueError(f"need one score per training point ({dataset.n_train}), got shape {scores.shape}")
    memorized = select_above(scores, threshold)
    count = int(memorized.sum())
    choices = {"memorized": lambda: memorized,
               "random": lambda: random_selection(dataset.n_train, count, seed),
               "low-score large": lambda: low_score_large_selection(scores, dataset.group_size_train, count)}
    return marginal_utility(dataset, spec, {name: choices[name]() for name in arms}, models, store,
                            device, seed)


# ----------------------------------------------------------------------------- verdict helpers


def undecidable(name: str, reason: str) -> Statistic:
    """A decisive statistic the data cannot provide (e.g. nothing selected): never decided."""
    return Statistic(name, float("nan"), float("nan"), float("nan"), 0, "models", reason)
