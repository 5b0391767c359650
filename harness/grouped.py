"""Grouped leave-out: exact-LOO scores for many targets from each trained model.

Exact leave-one-out (:func:`harness.masks.loo_plan`) trains M models on S and M on
S \\ {i} for every target i: (T + 1) M models for T targets. Grouped leave-out leaves
several targets out of each model, as long as they cannot influence one another:

1. **Conflicts.** Targets i and j conflict when they share a known (or inferred)
   sub-population, or lie closer than a distance d in input space:

       conflict(i, j) = (sub(i) == sub(j) != UNKNOWN) or ||x_i - x_j|| < d,

   with d = ``DISTANCE_SCALE`` x the median nearest-neighbour distance of the training
   points unless given (the scale at which :func:`harness.data.infer_subpopulations` merges
   points into one sub-population).
2. **Groups.** The targets are split into G *compatible* groups (no two members of a group
   conflict) by greedy colouring of the conflict graph: targets in order of falling number
   of conflicts, each into the smallest group it is compatible with, a new group when there
   is none. G is at least the largest number of targets sharing a sub-population (they all
   conflict with one another) and at most the largest number of conflicts of a target + 1.
3. **Plan** (:func:`grouped_plan`): M base models on S, then M models on S \\ g for every
   group g, so every target is left out of exactly M models: (G + 1) M models in all.

Estimator (:func:`grouped_scores`), for target i in group g(i):

    P_out(i) = share of the M models trained on S \\ g(i) that classify x_i correctly,
    P_in(i)  = share of the M base models (on S) that classify x_i correctly,
    mem(i)   = P_in(i) - P_out(i),

with Newcombe's hybrid score interval (as :mod:`harness.estimators`). With
``pool_in=True``, P_in(i) also counts the models trained on S \\ g' for every group g'
that holds no target conflicting with i (i itself included), (1 + G - c_i) M models where
c_i is the number of groups holding a target that conflicts with i.

Why this is exact LOO up to a small, controlled error. P_out(i) is measured on
S \\ g(i) instead of S \\ {i}; the two sets differ by the points g(i) \\ {i}, none of
which shares i's sub-population or lies within d of it. To first order, removing a set of
points changes Pr[h(x_i) = y_i] by the sum of their pairwise influences on i,

    P_out(i; S \\ g) - P_out(i; S \\ {i})  ~  sum over j in g \\ {i} of infl(j -> i),
    infl(j -> i) = Pr[h(x_i) = y_i | h <- A(S)] - Pr[h(x_i) = y_i | h <- A(S \\ {j})],

and influence is local: FZ20's high-influence pairs are near-duplicates of one class, and
IMN25 traces the subsampled estimator's bias to removing a point *together with* its
sub-population mates (about (1 - r) of them at rate r). Grouping removes no mate of i and
nothing within d of it, so every term is a far pair's influence, which is small, and the
set removed besides i is a sliver of S (|g| - 1 out of n, as if subsampling at rate
1 - (|g| - 1)/n, close to 1). The same argument covers the pooled P_in: the models trained on
S \\ g' with g' free of i's conflicts differ from S by |g'| far-away points only. Both
statements are empirical, not guaranteed, and are checked against exact LOO by the
``grouped-leave-out`` claim (claims/test_grouped_leave_out.py). The far pairs' influences
need not cancel: with C classes about (C - 1)/C of the other group members belong to other
classes, and removing competitors tends to make x_i easier to classify, so a small negative
bias (grouped below exact) is the direction to expect; that claim measures its size.

Plans are :class:`harness.masks.MaskPlan` s of kind ``"grouped"``; a row leaves out several
targets, so ``left_out`` holds ``-1`` for base rows and ``SEVERAL_LEFT_OUT`` for the others
(which makes :func:`harness.estimators.exact_loo` refuse such a plan rather than misread it);
which targets row k leaves out is ``groups[group_of_model[k]]`` of :class:`GroupedPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.data import UNKNOWN_GROUP, Dataset
from harness.estimators import MemorizationScores, ModelRows, from_rows
from harness.masks import MaskPlan
from harness.neighbours import distances, nearest_other_distances

DISTANCE_SCALE = 2.0     # d = this x the median nearest-neighbour distance (infer_subpopulations' cut)
SEVERAL_LEFT_OUT = -2    # MaskPlan.left_out of a row that leaves out a whole group


@dataclass(frozen=True, eq=False)
class GroupedPlan:
    """A grouped leave-out plan: the masks to train and which targets each model leaves out.

    ``groups[g]`` holds the point indices of group g; ``group_of_model[k]`` is the group model
    k leaves out (-1 for a base model on S); ``conflicts[a, b]`` says whether targets
    ``targets[a]`` and ``targets[b]`` conflict (the diagonal is True).
    """

    plan: MaskPlan
    targets: np.ndarray
    groups: tuple[np.ndarray, ...]
    group_of_model: np.ndarray
    conflicts: np.ndarray
    min_distance: float
    subpopulation: np.ndarray

    @property
    def models_per_target(self) -> int:
        return int(self.plan.params["models_per_target"])

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def exact_loo_models(self) -> int:
        """Models exact LOO needs for the same targets at the same M: (T + 1) M."""
        return (len(self.targets) + 1) * self.models_per_target

    def to_dataframe(self) -> pd.DataFrame:
        """One row per target: its group, sub-population id and number of conflicting targets."""
        group_of_target = np.empty(len(self.targets), dtype=np.int64)
        position = {p: a for a, p in enumerate(self.targets.tolist())}
        for g, members in enumerate(self.groups):
            group_of_target[[position[p] for p in members.tolist()]] = g
        return pd.DataFrame({"point": self.targets, "group": group_of_target,
                             "subpopulation": self.subpopulation[self.targets],
                             "conflicts": self.conflicts.sum(1) - 1}).set_index("point")


def median_neighbour_distance(features: np.ndarray) -> float:
    """Median over points of the Euclidean distance to the nearest other point."""
    return float(np.median(nearest_other_distances(features)))


def conflict_matrix(targets, subpopulation: np.ndarray | None, features: np.ndarray | None,
                    min_distance: float) -> np.ndarray:
    """(T, T) bool: targets that share a known sub-population or lie closer than ``min_distance``."""
    targets = np.asarray(targets, dtype=np.int64)
    if subpopulation is None and features is None:
        raise ValueError("need sub-population ids or features (or both) to tell which targets conflict")
    if not np.isfinite(min_distance) or min_distance < 0:
        raise ValueError(f"min_distance must be a finite number >= 0, got {min_distance}")
    if features is None and min_distance > 0:
        raise ValueError(f"min_distance={min_distance} needs features to measure distances")
    conflicts = np.eye(len(targets), dtype=bool)
    if subpopulation is not None:
        ids = np.asarray(subpopulation)[targets]
        conflicts |= (ids[:, None] == ids[None, :]) & (ids[:, None] != UNKNOWN_GROUP)
    if features is not None and min_distance > 0:
        points = np.asarray(features, dtype=np.float64)[targets]
        conflicts |= distances(points, points) < min_distance
    return conflicts


def compatible_groups(conflicts: np.ndarray, max_group_size: int | None = None) -> list[np.ndarray]:
    """Greedy colouring of the conflict graph: lists of target positions, no two of a list in conflict.

    Targets go in order of falling number of conflicts (ties: lower position first), each into
    the smallest group with room and no conflict (ties: the earliest group), else a new one.
    """
    conflicts = np.asarray(conflicts, dtype=bool)
    if conflicts.ndim != 2 or conflicts.shape[0] != conflicts.shape[1] or len(conflicts) == 0:
        raise ValueError(f"conflicts must be a non-empty square bool matrix, got shape {conflicts.shape}")
    if not (conflicts == conflicts.T).all():
        raise ValueError("conflicts must be symmetric: a conflict holds both ways")
    if max_group_size is not None and max_group_size < 1:
        raise ValueError(f"max_group_size must be None or >= 1, got {max_group_size}")
    off_diagonal = conflicts & ~np.eye(len(conflicts), dtype=bool)
    order = np.lexsort((np.arange(len(conflicts)), -off_diagonal.sum(1)))
    groups: list[list[int]] = []
    for a in order.tolist():
        fits = [g for g, members in enumerate(groups)
                if not off_diagonal[a, members].any()
                and (max_group_size is None or len(members) < max_group_size)]
        if fits:
            groups[min(fits, key=lambda g: len(groups[g]))].append(a)
        else:
            groups.append([a])
    return [np.sort(np.array(members, dtype=np.int64)) for members in groups]


def grouped_plan(dataset: Dataset, targets, models_per_target: int, min_distance: float | None = None,
                 max_group_size: int | None = None) -> GroupedPlan:
    """M models on S and M on S minus each compatible group of ``targets`` (module docstring).

    Sub-populations come from ``dataset.group_train`` where known; distances from the
    flattened training inputs. ``min_distance`` defaults to ``DISTANCE_SCALE`` x the median
    nearest-neighbour distance; 0 switches the distance rule off (then sub-populations must
    be known).
    """
    n = dataset.n_train
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1 or len(targets) == 0 or len(np.unique(targets)) != len(targets):
        raise ValueError("targets must be a non-empty 1-D array of distinct point indices")
    if targets.min() < 0 or targets.max() >= n:
        raise ValueError(f"targets must be training point indices 0..{n - 1}, got {targets.min()}..{targets.max()}")
    if int(models_per_target) != models_per_target or models_per_target < 1:
        raise ValueError(f"models_per_target must be an integer >= 1, got {models_per_target}")
    targets = np.sort(targets)
    features = dataset.x_train.reshape(n, -1).float().numpy()
    if min_distance is None:
        min_distance = DISTANCE_SCALE * median_neighbour_distance(features)
    subpopulation = (dataset.group_train if dataset.group_train is not None
                     else np.full(n, UNKNOWN_GROUP, dtype=np.int64))
    if min_distance == 0 and (subpopulation[targets] == UNKNOWN_GROUP).any():
        raise ValueError("min_distance=0 leaves only sub-populations to separate targets, but some targets' "
                         "sub-populations are unknown; give a distance or infer sub-populations "
                         "(harness.data.infer_subpopulations)")
    conflicts = conflict_matrix(targets, subpopulation, features, float(min_distance))
    groups = tuple(targets[positions] for positions in compatible_groups(conflicts, max_group_size))
    group_of_model = np.repeat(np.arange(-1, len(groups)), models_per_target)
    masks = np.ones((len(group_of_model), n), dtype=bool)
    for g, members in enumerate(groups):
        masks[np.ix_(np.flatnonzero(group_of_model == g), members)] = False
    left_out = np.where(group_of_model == -1, -1, SEVERAL_LEFT_OUT)
    plan = MaskPlan("grouped", masks, left_out,
                    {"n": n, "models_per_target": int(models_per_target), "targets": len(targets),
                     "groups": len(groups), "min_distance": round(float(min_distance), 6),
                     "max_group_size": max_group_size})
    return GroupedPlan(plan, targets, groups, group_of_model, conflicts, float(min_distance),
                       np.asarray(subpopulation))


def grouped_scores(grouped: GroupedPlan, train_margin: np.ndarray, pool_in: bool = False,
                   alpha: float = 0.05) -> MemorizationScores:
    """mem(i) = P_in - P_out for every target of the plan, in ``grouped.targets`` order.

    ``train_margin`` is the ensemble's (K, n) margin (> 0: classified correctly). ``pool_in``
    adds to P_in the models that left out a group free of the target's conflicts.
    """
    train_margin = np.asarray(train_margin)
    if train_margin.shape != grouped.plan.masks.shape:
        raise ValueError(f"train_margin has shape {train_margin.shape}, the plan's masks "
                         f"{grouped.plan.masks.shape}: one row per model and one column per training point")
    margin = train_margin[:, grouped.targets]
    if np.isnan(margin).any():
        raise ValueError(f"train_margin holds {int(np.isnan(margin).sum())} NaN entries at the targets: a model "
                         "diverged or its row was never written; retrain those models")
    correct = margin > 0
    position = {p: a for a, p in enumerate(grouped.targets.tolist())}
    group_of_target = np.empty(len(grouped.targets), dtype=np.int64)
    for g, members in enumerate(grouped.groups):
        group_of_target[[position[p] for p in members.tolist()]] = g
    # (G + 1, T): row g + 1 says whether group g's models may count toward a target's P_in;
    # the base models (row 0) always do.
    usable = np.zeros((grouped.n_groups + 1, len(grouped.targets)), dtype=bool)
    usable[0] = True
    if pool_in:
        for g, members in enumerate(grouped.groups):
            member_positions = [position[p] for p in members.tolist()]
            usable[g + 1] = ~grouped.conflicts[member_positions].any(0)
    in_rows = usable[grouped.group_of_model + 1]                                  # (K, T)
    out_rows = grouped.group_of_model[:, None] == group_of_target[None, :]         # (K, T)
    # One pool for the base models and one for each group's models.
    rows = ModelRows.of(correct, in_rows, correct, out_rows, grouped.group_of_model)
    return from_rows("grouped (pooled P_in)" if pool_in else "grouped", grouped.targets.copy(), rows, alpha)
