"""Removal experiments: the marginal utility of a set of training points (FZ20, as IMN25 3.3 describes it).

The marginal utility of a set R of training points is the mean test accuracy of M models
trained on S minus that of M models trained on S \\ R:

    utility(R) = mean_k acc(h_k^S) - mean_k acc(h_k^{S \\ R}),      k = 1 .. M.

Every arm is a mask plan on S (:func:`harness.masks.removal_plan`) trained through
:func:`harness.ensemble.train_ensemble`: the same data set object, so the same input scaling
and length scale in every arm, differing only in the points each model leaves out. Model k of
every arm gets the same training seed, so (acc(h_k^S), acc(h_k^{S \\ R})) are pairs. The random
arm draws *its own* random set for each model k, so resampling models also redraws the random
set. Intervals are crossed bootstraps (``harness.stats.crossed_bootstrap``) over the model
index k (all arms together, keeping the pairs) and the test points, resampled as whole
sub-populations (within strata where a statistic compares parts of the test split):

    drop(R)            = utility(R) on the whole test split
    drop(R; T)         = the same on a subset T of the test points (or a weighting of them)
    contrast(R; T, U)  = drop(R; T) - drop(R; U)
    range(R_1 .. R_J)  = max_j utility(R_j) - min_j utility(R_j)

A sub-population g is *purged* by R when every training point of g is in R; its test points
are the ones a purge shifts the distribution for (IMN25 4.3).

Test points are weighted to the training split's sub-population mix where a generator designed
the test split (``dataset.meta["generator"]``): a test point of sub-population g weighs
n_train(g) / n_test(g). The synthetic generator gives every sub-population at least two test
points, so singletons are 3.6 % of the default profile's training split but 17.9 % of its test
split; unweighted, every drop would lean on the tail and favour the claims that removing tail
points costs accuracy. A test split drawn from the data (digits, images) is used as drawn.

Points are selected from memorization scores (``harness.experiments.selection_scores``, the
caller's): FZ20's subsampled estimator (at FZ20's r = 0.7 unless told otherwise), or exact
leave-one-out (ridge: closed form for every point; MLP: a LOO plan over given targets).
:func:`removal_experiment` removes the points with score >= theta and, for comparison, as many
random points and as many of the lowest-scoring points of large sub-populations (IMN25 4.3's
counter-example).

The intervals hold R fixed, yet R itself is noisy: another seed's scoring models put a borderline
point in it or leave it out. Point i's membership varies across seeds with variance p_i (1 - p_i),
p_i its chance of selection. :func:`selection_flip_rates` bounds it from the scoring models at
hand: split them into two disjoint halves A and B at random (within each pool), select with each,
and take

    f_i = 1/2 mean over halvings of [i in R_A] != [i in R_B].

Two halves' scores are independent given the truth, each with twice the full ensemble's variance,
so E f_i = q_i (1 - q_i) with q_i a half's chance of selecting i; with normal score noise q_i lies
nearer 1/2 than p_i does, so f_i >= p_i (1 - p_i) on average over ensembles: a bound (at
s_i = theta both are 1/4; a standard deviation away, 0.18 against 0.13). One ensemble's f_i
scatters around it like any variance estimate: the halves' mean is the ensemble's own estimate, so
f_i is 1/2 where that sits on theta and falls off as it moves away.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from harness import stats
from harness.data import UNKNOWN_GROUP, Dataset
from harness.ensemble import train_ensemble
from harness.masks import removal_plan
from harness.profiles import SIZE_BINS
from harness.store import Store
from harness.verdict import Statistic

CONTROL_ARM = "random, second draw"  # a negative control's stand-in for the memorized set (harness.controls)
COMPARISON_ARMS = ("memorized", "random", "low-score large")
ARMS = COMPARISON_ARMS + (CONTROL_ARM,)
FULL_ARM = "none"  # the row of S itself in tables


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


def selection_flip_rates(scores, threshold: float, halvings: int = 100, seed: int = 0) -> np.ndarray:
    """f_i for every scored point (module docstring): half the share of ``halvings`` random
    halvings of the scoring models (``MemorizationScores`` with their rows) whose halves disagree
    on ``score >= threshold``. A point a half cannot score (no model in or out of it) counts as
    not selected by that half."""
    if halvings < 1:
        raise ValueError(f"halvings must be >= 1, got {halvings}")
    pools = scores.model_groups
    pool_rows = [np.flatnonzero(pools == pool) for pool in np.unique(pools)]
    rng = np.random.default_rng(seed)
    disagreements = np.zeros(len(scores))
    for _ in range(halvings):
        half = np.zeros(len(pools))
        for rows in pool_rows:
            half[rng.permutation(rows)[: len(rows) // 2]] = 1.0
        with np.errstate(invalid="ignore"):
            disagreements += (scores.rescored(half) >= threshold) != (scores.rescored(1.0 - half) >= threshold)
    return disagreements / (2 * halvings)


def random_selection(n: int, count: int, seed=0) -> np.ndarray:
    """``count`` of ``n`` points drawn uniformly without replacement, as a bool mask."""
    if not 0 <= count <= n:
        raise ValueError(f"cannot draw {count} of {n} points; count must lie in 0..{n}")
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, count, replace=False)] = True
    return chosen


def random_selections(n: int, count: int, models: int, seed: int = 0, draw: int = 0) -> np.ndarray:
    """A random set of ``count`` points for each of ``models`` models: bool (models, n); ``draw``
    numbers independent draws from the same seed."""
    return np.stack([random_selection(n, count, seed=[seed, k] + ([draw] if draw else []))
                     if count else np.zeros(n, dtype=bool) for k in range(models)])


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


# ----------------------------------------------------------------------------- experiment


@dataclass(frozen=True, eq=False)
class RemovalArm:
    """Models trained on S minus ``removed[k]`` (model k's points): their correctness on every test point."""

    name: str
    removed: np.ndarray        # bool (M models, n_train)
    test_correct: np.ndarray   # bool (M models, n_test)

    @property
    def count(self) -> int:
        """Points each model of the arm leaves out."""
        return int(self.removed[0].sum())

    @property
    def fixed_set(self) -> np.ndarray:
        """The points every model of the arm leaves out (bool over the training points)."""
        if not (self.removed == self.removed[0]).all():
            raise ValueError(f"arm {self.name!r} removes a different set for each model; it has no fixed set")
        return self.removed[0]


@dataclass(frozen=True, eq=False)
class MarginalUtility:
    """Models on S (``full_correct``) and on S minus each arm's points, on the same test split."""

    dataset: Dataset
    full_correct: np.ndarray   # bool (M models, n_test)
    arms: dict
    models: int                # models behind the result, all arms and S together
    seed: int = 0

    @property
    def models_per_arm(self) -> int:
        return len(self.full_correct)

    def arm(self, name: str) -> RemovalArm:
        if name not in self.arms:
            raise ValueError(f"no arm {name!r}; arms: {sorted(self.arms)}")
        return self.arms[name]

    @cached_property
    def mix_weights(self) -> np.ndarray:
        """Each test point's weight in the training mix (module docstring); ones for a drawn split."""
        data = self.dataset
        if "generator" not in data.meta or data.group_test is None or data.group_train is None:
            return np.ones(data.n_test)
        train = dict(zip(*np.unique(data.group_train, return_counts=True)))
        groups, inverse, test = np.unique(data.group_test, return_inverse=True, return_counts=True)
        return np.array([train.get(g, 0) for g in groups.tolist()], dtype=float)[inverse] / test[inverse]

    def test_weights(self, test_points) -> np.ndarray:
        """Test points as weights, times :attr:`mix_weights`: None is every point, a bool mask its
        points, a float array (>= 0) its own weights (e.g. to reweight a test split's mix)."""
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
        weights = weights * self.mix_weights
        if weights.sum() == 0:
            raise ValueError("test_points selects no test point (of a sub-population with training points)")
        return weights

    def _correct(self, name: str | None) -> np.ndarray:
        return self.full_correct if name is None else self.arm(name).test_correct

    def per_model_accuracy(self, name: str | None = None, test_points=None) -> np.ndarray:
        """Accuracy of each model on the chosen test points; ``name=None`` is S itself."""
        weights = self.test_weights(test_points)
        return self._correct(name) @ (weights / weights.sum())

    def per_model_drop(self, name: str, test_points=None) -> np.ndarray:
        """acc(h_k^S) - acc(h_k^{S minus R}) for each model index k."""
        return self.per_model_accuracy(None, test_points) - self.per_model_accuracy(name, test_points)

    # ------------------------------------------------------------------ resampled figures

    def bootstrap(self, statistic, strata=None, n_boot: int = 1000, components: bool = True) -> dict:
        """Crossed bootstrap (module docstring) of ``statistic(replicate) -> {name: value}``: the
        model index k of every arm together, and the test points by sub-population within ``strata``."""
        clusters = (self.dataset.group_test if self.dataset.group_test is not None
                    else np.full(self.dataset.n_test, UNKNOWN_GROUP))
        return stats.crossed_bootstrap(statistic, {"models": np.zeros(self.models_per_arm, dtype=np.int64)},
                                       {"test": stats.Points(clusters, strata)}, n_boot=n_boot, seed=self.seed,
                                       components=components)

    def resampled_accuracy(self, replicate, name: str | None = None, test_points=None) -> float:
        """Mean accuracy over the replicate's models on its test points (NaN if it drew none of them)."""
        rows, points = replicate.models["models"], replicate.points["test"]
        weights = self.test_weights(test_points)[points]
        if weights.sum() == 0:
            return float("nan")
        per_model = self._correct(name)[:, points] @ (weights / weights.sum())
        return float(per_model @ rows / rows.sum())

    def resampled_drop(self, replicate, name: str, test_points=None) -> float:
        return (self.resampled_accuracy(replicate, None, test_points)
                - self.resampled_accuracy(replicate, name, test_points))

    def accuracy(self, name: str | None = None, test_points=None) -> stats.CrossedInterval:
        return self.bootstrap(lambda r: {"a": self.resampled_accuracy(r, name, test_points)})["a"]

    def drop(self, name: str, test_points=None) -> stats.CrossedInterval:
        """Marginal utility of the arm's points: the accuracy lost by removing them."""
        return self.bootstrap(lambda r: {"d": self.resampled_drop(r, name, test_points)})["d"]

    def drop_difference(self, name: str, other: str, test_points=None) -> stats.CrossedInterval:
        """drop(name) - drop(other) = acc(S minus other) - acc(S minus name), paired over k."""
        return self.bootstrap(lambda r: {"d": self.resampled_accuracy(r, other, test_points)
                                         - self.resampled_accuracy(r, name, test_points)})["d"]

    def drop_contrast(self, name: str, test_points: np.ndarray, other_test_points: np.ndarray) -> stats.CrossedInterval:
        """drop on ``test_points`` minus drop on ``other_test_points`` (two disjoint bool masks,
        each resampled within itself)."""
        strata = np.asarray(test_points, dtype=int) + 2 * np.asarray(other_test_points, dtype=int)
        return self.bootstrap(lambda r: {"d": self.resampled_drop(r, name, test_points)
                                         - self.resampled_drop(r, name, other_test_points)}, strata)["d"]

    def statistic(self, name: str, interval: stats.CrossedInterval, note: str = "") -> Statistic:
        """A removal interval as a verdict statistic, with its models per arm for the power statement."""
        return Statistic.from_interval(name, interval, unit="test points", note=note,
                                       models_per_arm={"models per arm": self.models_per_arm})

    def drop_range(self, names: list[str]) -> stats.CrossedInterval:
        """max minus min of the arms' drops.

        The maximum of noisy estimates is biased upward, so under equal true drops this
        estimate is still above 0 by about the spread of the noise.
        """
        if len(names) < 2:
            raise ValueError(f"a range needs at least two arms, got {names}")

        def spread(replicate):
            drops = [self.resampled_drop(replicate, name) for name in names]
            return {"range": max(drops) - min(drops)}

        return self.bootstrap(spread)["range"]

    def purged_groups(self, name: str) -> np.ndarray:
        """Sub-populations whose every training point the arm removes."""
        groups = self.dataset.group_train
        if groups is None:
            return np.array([], dtype=np.int64)
        removed = self.arm(name).fixed_set
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
        removed = self.arm(name).fixed_set
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
            fixed = bool((arm.removed == arm.removed[0]).all())
            rows.append({"arm": name, "removed": arm.count,
                         "purged_subpopulations": len(self.purged_groups(name)) if fixed else np.nan,
                         "accuracy": accuracy.estimate, "accuracy_lower": accuracy.lower,
                         "accuracy_upper": accuracy.upper, "drop": drop.estimate,
                         "drop_lower": drop.lower, "drop_upper": drop.upper})
        return pd.DataFrame(rows).set_index("arm")


def marginal_utility(dataset: Dataset, spec, removals: dict, models: int, store: Store,
                     device: str = "cpu", seed: int = 0, progress: bool = True) -> MarginalUtility:
    """Train M models on S and M on S minus each named set of points: a bool mask over the
    training points (every model leaves out the same set) or one row per model (its own set)."""
    if not removals:
        raise ValueError("removals is empty: name at least one set of training points to remove")
    full = train_ensemble(dataset, spec, removal_plan(np.zeros((models, dataset.n_train), dtype=bool)),
                          store, seed, device, progress)
    total = full.n_models
    arms = {}
    for name, removed in removals.items():
        removed = np.asarray(removed)
        if removed.dtype != np.bool_ or removed.shape not in ((dataset.n_train,), (models, dataset.n_train)):
            raise ValueError(f"arm {name!r}: removal must be a bool mask of shape ({dataset.n_train},) or "
                             f"({models}, {dataset.n_train}), got {removed.dtype} {removed.shape}")
        removed = np.broadcast_to(removed, (models, dataset.n_train))
        if removed.all(axis=1).any():
            raise ValueError(f"arm {name!r} removes every training point; nothing would be left to train on")
        if len(set(removed.sum(1).tolist())) != 1:
            raise ValueError(f"arm {name!r}: every model must leave out as many points")
        if not removed.any():
            arms[name] = RemovalArm(name, removed, full.test_correct)  # S itself: same models
            continue
        ensemble = train_ensemble(dataset, spec, removal_plan(removed), store, seed, device, progress)
        arms[name] = RemovalArm(name, removed, ensemble.test_correct)
        total += ensemble.n_models
    return MarginalUtility(dataset, full.test_correct, arms, total, seed)


def removal_experiment(dataset: Dataset, spec, scores, threshold: float, models: int, store: Store,
                       device: str = "cpu", seed: int = 0, arms: tuple = COMPARISON_ARMS) -> MarginalUtility:
    """FZ20's removal of the points with score >= threshold, beside the requested comparison arms.

    Arms: ``"memorized"`` (score >= threshold), ``"random"`` (as many uniformly drawn points, a
    set of its own for each model, seeded by ``seed``), ``"random, second draw"`` (the same, drawn
    again: a negative control's stand-in for the memorized set) and ``"low-score large"`` (as
    many of the lowest-scoring points of large sub-populations, or all of them if there are fewer).
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
               "random": lambda: random_selections(dataset.n_train, count, models, seed),
               CONTROL_ARM: lambda: random_selections(dataset.n_train, count, models, seed, draw=1),
               "low-score large": lambda: low_score_large_selection(scores, dataset.group_size_train, count)}
    return marginal_utility(dataset, spec, {name: choices[name]() for name in arms}, models, store,
                            device, seed)
