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

The study (:func:`study`): per rate r of the profile's ``sampling_rates`` (on the real images its
``image_sampling_rates`` where it has a shorter sweep for them), the subsampled scores
and exact LOO scores of the same points (:func:`harness.experiments.approximation_error`), with
k models at rate r (:func:`models_at`). At rate r each point is left out of k (1 - r) models, so
k is raised to at least MIN_MODELS_OUT / (1 - r) (r = 0.99 needs 1,000 models for 10). P_out is
unbiased for any count, and a bin's bias averages many points, so 10 suffice for the bin means
the claim is about (not for single points' scores). A rate whose k exceeds the family's budget
(:func:`model_budget` times the profile's k: RATE_MODEL_BUDGET for the suite's ridge and MLP,
OWN_FAMILY_RATE_BUDGET, the MLP's, for a family of one's own) is reported as unresolvable and
left out; a family of one's own has its budget stated in the report's notes. Also
reported: a Spearman correlation of bias(small) with r across the rates, and the change between
r = 0.5 and r = 0.9, where the reviews of IMN26 saw the error flat on CIFAR-10.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from harness import controls, plots, stats
from harness.experiments import approximation_error, load_or_skip
from harness.profiles import MIN_MODELS_OUT, OWN_FAMILY_RATE_BUDGET, RATE_MODEL_BUDGET, SIZE_BINS
from harness.train import MLPSpec, RidgeSpec
from harness.verdict import (CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, intersection_union,
                             margin_left, undecidable)
from harness.specs import ConvSpec

CLAIM = "sampling-rate-bias"
MARGIN = 0.05
THRESHOLD = Threshold(0.0, "above", "IMN26: raising r toward LOO removes the bias: the bias of small "
                                    "sub-populations falls from the lowest to the highest rate, and at the highest "
                                    f"rate lies within +-{MARGIN} (IMN25 4.2's 'within 5 % error') of zero; both "
                                    "parts above 0")
MIN_POINTS_PER_BIN = 3
SPEARMAN_MIN_RATES = 4   # the reported trend's Fisher z interval needs four rates
CONTROL = "the change of rate: the lowest rate against itself, two random halves of its models"
PAPER = {"figure": "raising r toward LOO (e.g. r = 0.95) removes the bias", "source": "IMN26 (abstract and reviews)",
         "reviews": "error flat between r = 0.5 and 0.9 on CIFAR-10 (reviews of IMN26)"}


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


SUITE_SPECS = (RidgeSpec, MLPSpec, ConvSpec)


def model_budget(spec) -> int:
    """How many times the profile's k one rate may train of ``spec``'s family: RATE_MODEL_BUDGET
    for the suite's families (a ValueError for one it has no budget for), OWN_FAMILY_RATE_BUDGET
    for any other (one's own), whatever its name."""
    if not isinstance(spec, SUITE_SPECS):
        return OWN_FAMILY_RATE_BUDGET
    if spec.family not in RATE_MODEL_BUDGET:
        raise ValueError(f"{CLAIM} budgets its models per family (harness.profiles.RATE_MODEL_BUDGET: "
                         f"{sorted(RATE_MODEL_BUDGET)}); the suite's {spec.family} family has no budget there")
    return RATE_MODEL_BUDGET[spec.family]


def models_at(rate: float, budget: int, profile) -> int | None:
    """k at rate r: the profile's k, raised so each point is out of >= MIN_MODELS_OUT models;
    None when that is over ``budget`` times the profile's k."""
    needed = max(profile.subsampled_models, math.ceil(MIN_MODELS_OUT / (1.0 - rate) - 1e-9))
    return needed if needed <= budget * profile.subsampled_models else None


def bias_by_bin(errors: dict[float, pd.DataFrame]) -> pd.DataFrame:
    """Mean error with a bootstrap interval per rate and size bin."""
    rows = []
    for rate, table in errors.items():
        for name in SIZE_BINS:
            values = table.loc[table["bin"] == name, "error"].to_numpy()
            if len(values) >= MIN_POINTS_PER_BIN:
                interval = stats.bootstrap_mean(values)
                rows.append({"rate": rate, "bin": name, "bias": interval.estimate, "lower": interval.lower,
                             "upper": interval.upper, "points": interval.n,
                             "mean absolute error": float(np.abs(table["error"]).mean())})
    return pd.DataFrame(rows)


def bias_figure(bias: pd.DataFrame, title: str):
    figure = None
    for name in SIZE_BINS:
        rows = bias[bias["bin"] == name]
        if len(rows):
            figure = plots.curve_with_band(rows["rate"], rows["bias"], rows["lower"], rows["upper"],
                                           "sampling rate r", "bias: mean(subsampled - exact LOO)", title,
                                           label=name, ax=None if figure is None else figure.axes[0])
    return figure


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    spec = case.spec(profile)
    budget = model_budget(spec)
    planned = {rate: models_at(rate, budget, profile) for rate in profile.sampling_rates_for(case.on_real_images)}
    resolvable = [rate for rate, models in planned.items() if models is not None]
    if len(resolvable) < 2:
        raise ValueError(f"{case.id}: fewer than two rates fit the budget ({planned})")
    studies = {rate: approximation_error(data, spec, rate, replace(profile, subsampled_models=planned[rate]), store,
                                         device, seed) for rate in resolvable}
    errors = {rate: approximation.table for rate, approximation in studies.items()}
    highest = studies[resolvable[-1]]
    # The exact-LOO ensemble is the same at every rate: count it once.
    loo_models = highest.models - planned[resolvable[-1]]
    models = loo_models + sum(planned[r] for r in resolvable)
    decision = decide(studies, seed)
    bias = bias_by_bin(errors)
    small = bias[bias["bin"] == "small"]
    further = []
    if len(small) >= SPEARMAN_MIN_RATES:
        further.append(Statistic.from_interval("Spearman of bias(small) with the rate",
                                               stats.spearman(small["rate"], small["bias"]), unit="rates",
                                               note="negative when the bias falls as r rises; Fisher z interval "
                                                    "(zero width at -1 or 1)"))
    if 0.5 in errors and 0.9 in errors and small_points(studies[0.5]).sum() >= MIN_POINTS_PER_BIN:
        flat = bias_contrast(studies[0.5].loo, studies[0.5].subsampled, studies[0.9].subsampled,
                             small_points(studies[0.5]), np.asarray(studies[0.5].points.clusters), seed)["change"]
        further.append(Statistic.from_interval("bias of small sub-populations at r=0.5 minus at r=0.9", flat,
                                               note="the reviews of IMN26 saw the error flat between r = 0.5 and 0.9 "
                                                    "on CIFAR-10"))
    unresolvable = [rate for rate, models in planned.items() if models is None]
    result = ClaimResult.from_decision(
        decision, statistics=further, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=models,
        notes=[f"{len(highest.loo)} points scored by exact LOO; rates {resolvable} with k = "
               + ", ".join(f"{planned[r]}" for r in resolvable)
               + f" models, so every point is left out of at least {MIN_MODELS_OUT} models",
               "bias of small sub-populations by rate: "
               + ", ".join(f"r={r}: {b:.3f}" for r, b in zip(small["rate"], small["bias"]))]
              + ([f"rates {unresolvable} unresolvable at this budget: they need "
                  f"{', '.join(str(math.ceil(MIN_MODELS_OUT / (1 - r) - 1e-9)) for r in unresolvable)} models, over "
                  f"{budget * profile.subsampled_models} for the {case.family} family"]
                 if unresolvable else [])
              + ([f"{case.family} is a family of one's own: at most {budget * profile.subsampled_models} models a "
                  f"rate ({budget} x the profile's k = {profile.subsampled_models}; "
                  f"harness.profiles.OWN_FAMILY_RATE_BUDGET, the suite's MLP budget)"]
                 if not isinstance(spec, SUITE_SPECS) else []))
    return CaseReport(result, {"bias-vs-rate": bias_figure(bias, f"{case.id}: bias of the subsampled estimator")},
                      {"bias by rate and sub-population size": bias.round(4)})
