"""sampling-rate-bias (IMN26): raising the sampling rate r of Feldman & Zhang's subsampled
estimator toward leave-one-out (e.g. r = 0.95) removes its bias.

Per rate r, the subsampled scores and exact LOO scores of the same points; the bias of a size
bin is its mean error = subsampled - LOO, taken on small sub-populations (2 to 10 members, the
bin IMN25 found hardest hit). "Removes" has two parts, and both must hold (intersection-union,
each at the 95 % level):

    falls:    bias(small, r_lowest) - bias(small, r_highest) > 0,
    removed:  MARGIN - |bias(small, r_highest)| > 0,

the second an equivalence test: the whole interval of the bias at the highest rate lies within
+-MARGIN, IMN25 4.2's tolerance (a score "within 5 % error" of exact LOO agrees with it).
Intervals: one crossed bootstrap for both parts, resampling the LOO models, each rate's
subsampled models and the small bin's points (the same points at every rate, by sub-population).

Negative control: the same two parts with no change of rate, the lowest rate against itself:
one random half of its models in the lowest rate's place and the other half in the highest's.
"""

from __future__ import annotations

import numpy as np

from harness import controls, stats
from harness.verdict import Control, Decision, Statistic, Threshold, intersection_union, margin_left, undecidable

CLAIM = "sampling-rate-bias"
MARGIN = 0.05
THRESHOLD = Threshold(0.0, "above", "IMN26: raising r toward LOO removes the bias: the bias of small "
                                    "sub-populations falls from the lowest to the highest rate, and at the highest "
                                    f"rate lies within +-{MARGIN} (IMN25 4.2's 'within 5 % error') of zero; both "
                                    "parts above 0")
MIN_POINTS_PER_BIN = 3
CONTROL = "the change of rate: the lowest rate against itself, two random halves of its models"


def small_points(study) -> np.ndarray:
    return (study.table["bin"] == "small").to_numpy()


def bias_contrast(loo, first, second, small: np.ndarray, clusters: np.ndarray, seed: int = 0,
                  halves: np.ndarray | None = None) -> dict:
    """Crossed-bootstrap intervals of bias(small) under ``first`` minus under ``second``
    ("change") and of bias(small) under ``second`` ("last"). ``halves``: ``first`` and ``second``
    are one ensemble, split into the models where it is True and the rest."""
    pools = {"loo": loo.model_groups, "first": first.model_groups}
    if halves is None:
        pools["second"] = second.model_groups

    def figures(replicate):
        points = replicate.points["small"]
        exact = loo.rescored(replicate.models["loo"])[small][points]
        weights = ((replicate.models["first"], replicate.models["second"]) if halves is None else
                   (replicate.models["first"] * halves, replicate.models["first"] * ~halves))
        bias = [np.nanmean(scores.rescored(w)[small][points] - exact) for scores, w in zip((first, second), weights)]
        return {"change": bias[0] - bias[1], "last": bias[1]}

    return stats.crossed_bootstrap(figures, pools, {"small": stats.Points(clusters[small])}, seed=seed)


def removal_parts(intervals: dict, low: float, high: float, models_per_arm: dict, label: str = "") -> list:
    fall = Statistic.from_interval(f"bias of small sub-populations at r={low} minus at r={high}{label}",
                                   intervals["change"], models_per_arm=models_per_arm)
    last = Statistic.from_interval(f"bias of small sub-populations at r={high}{label}", intervals["last"],
                                   models_per_arm=models_per_arm)
    return [fall, margin_left(last, MARGIN), last]


def decide(studies: dict, seed: int = 0) -> Decision:
    """From one ``ApproximationStudy`` per rate (the same points and the same exact LOO rows)."""
    low, high = min(studies), max(studies)
    first, last = studies[low], studies[high]
    if not np.array_equal(first.table["point"].to_numpy(), last.table["point"].to_numpy()):
        raise ValueError("the rates scored different points; a paired difference needs the same ones")
    small = small_points(first)
    if small.sum() < MIN_POINTS_PER_BIN:
        missing = undecidable(f"bias of small sub-populations at r={low} minus at r={high}",
                              f"only {int(small.sum())} scored points in small sub-populations")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    clusters = np.asarray(first.points.clusters)
    arms = {f"subsampled models at r={rate}": len(studies[rate].subsampled.model_groups) for rate in (low, high)}
    arms |= first.loo_models_per_pool
    parts = removal_parts(bias_contrast(first.loo, first.subsampled, last.subsampled, small, clusters, seed),
                          low, high, arms)
    halves = controls.random_half(len(first.subsampled.model_groups), seed)
    same_rate = removal_parts(bias_contrast(first.loo, first.subsampled, first.subsampled, small, clusters, seed,
                                            halves), low, low, arms, ", halves of one ensemble")
    return Decision(intersection_union(parts[:2], THRESHOLD), THRESHOLD,
                    Control(intersection_union(same_rate[:2], THRESHOLD), CONTROL), parts)
