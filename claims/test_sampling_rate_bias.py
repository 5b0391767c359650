"""sampling-rate-bias (IMN26): raising the sampling rate r of Feldman & Zhang's subsampled
estimator toward leave-one-out (e.g. r = 0.95) removes its bias.

Per case and rate r, the subsampled scores and exact LOO scores of the same points
(:func:`harness.experiments.approximation_error`); the bias of a size bin is its mean
error = subsampled - LOO. The claim holds when the bias of small sub-populations (2 to 10
members, the bin IMN25 found hardest hit) falls from the lowest to the highest rate:

    decisive = bias(small, r_lowest) - bias(small, r_highest) > 0,

with a crossed bootstrap: the LOO models, each rate's subsampled models and the small bin's
points (the same points at every rate, resampled by sub-population) all resampled together.
Beside it: a Spearman correlation of bias(small) with r across the rates (negative when it
falls), the bias at the highest rate, and the change between r = 0.5 and r = 0.9, where the
reviews of IMN26 saw the error flat on CIFAR-10.

Models per rate: at rate r each point is left out of k (1 - r) models, so k is raised to
at least MIN_MODELS_OUT / (1 - r) (r = 0.99 needs 1,000 models for 10). P_out is unbiased
for any count, and a bin's bias averages many points, so 10 suffice for the bin means the
claim is about (not for single points' scores). A rate whose k exceeds the family's budget
(MODEL_BUDGET times the profile's k) is reported as unresolvable and left out.

Negative control (``harness.controls``): the decisive change with no change of rate, the bias
of small sub-populations from one random half of the lowest rate's models minus from the other.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from harness import controls, plots, stats
from harness.experiments import Case, approximation_error, load_dataset, training_points
from harness.profiles import SIZE_BINS
from harness.verdict import ClaimResult, Control, Statistic, Threshold, undecidable

CLAIM = "sampling-rate-bias"
THRESHOLD = Threshold(0.0, "above", "IMN26: raising r toward LOO removes the bias, so the bias of small "
                                    "sub-populations must fall from the lowest to the highest rate (the sign "
                                    "of the claim)")
MIN_MODELS_OUT = 10
# How many times the profile's k a family may train at one rate: ridge models are cheap.
MODEL_BUDGET = {"ridge": 4, "mlp": 1}
MIN_POINTS_PER_BIN = 3


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge")]
    return [Case("synthetic", "ridge"), Case("synthetic-steep", "ridge"), Case("synthetic", "mlp")]


def rates_of(profile) -> tuple[float, ...]:
    return (0.5, 0.7, 0.9, 0.95) if profile.name == "smoke" else (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def models_at(rate: float, family: str, profile) -> int | None:
    """k at rate r: the profile's k, raised so each point is out of >= MIN_MODELS_OUT models;
    None when that is over the family's budget."""
    needed = max(profile.subsampled_models, math.ceil(MIN_MODELS_OUT / (1.0 - rate) - 1e-9))
    return needed if needed <= MODEL_BUDGET[family] * profile.subsampled_models else None


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


def small_bias_change(studies: dict, high: float, low: float, name: str, data, seed: int = 0,
                      note: str = "") -> Statistic:
    """bias(small, low) - bias(small, high), crossed bootstrap (module docstring)."""
    tables = {rate: studies[rate].table for rate in (low, high)}
    if not np.array_equal(tables[low]["point"].to_numpy(), tables[high]["point"].to_numpy()):
        raise ValueError("the two rates scored different points; a paired difference needs the same ones")
    small = (tables[low]["bin"] == "small").to_numpy()
    if small.sum() < MIN_POINTS_PER_BIN:
        return undecidable(name, f"only {int(small.sum())} scored points in small sub-populations")
    loo = studies[low].loo

    def change(replicate):
        points = replicate.points["small"]
        exact = loo.rescored(replicate.models["loo"])[small][points]
        bias = {rate: np.nanmean(studies[rate].subsampled.rescored(replicate.models[f"r={rate}"])[small][points]
                                 - exact) for rate in (low, high)}
        return {"change": bias[low] - bias[high]}

    pools = {"loo": loo.model_groups} | {f"r={rate}": studies[rate].subsampled.model_groups for rate in (low, high)}
    interval = stats.crossed_bootstrap(change, pools, {"small": training_points(data, loo.points[small])},
                                       seed=seed)["change"]
    arms = {f"subsampled models at r={rate}": len(studies[rate].subsampled.model_groups) for rate in (low, high)}
    return Statistic.from_interval(name, interval, note=note, models_per_arm=arms | studies[low].loo_models_per_pool)


def same_rate_control(study, data, name: str, seed: int = 0) -> Statistic:
    """bias(small) from one random half of a rate's models minus from the other half: the decisive
    change with no change of rate (``harness.controls``)."""
    small = (study.table["bin"] == "small").to_numpy()
    if small.sum() < MIN_POINTS_PER_BIN:
        return undecidable(name, f"only {int(small.sum())} scored points in small sub-populations")
    half = controls.random_half(len(study.subsampled.model_groups), seed)

    def change(replicate):
        points = replicate.points["small"]
        exact = study.loo.rescored(replicate.models["loo"])[small][points]
        weights = replicate.models["subsampled"]
        first, second = (np.nanmean(study.subsampled.rescored(weights * part)[small][points] - exact)
                         for part in (half, ~half))
        return {"change": first - second}

    pools = {"loo": study.loo.model_groups, "subsampled": study.subsampled.model_groups}
    interval = stats.crossed_bootstrap(change, pools, {"small": training_points(data, study.loo.points[small])},
                                       seed=seed)["change"]
    return Statistic.from_interval(name, interval)


def bias_figure(bias: pd.DataFrame, title: str):
    figure = None
    for name in SIZE_BINS:
        rows = bias[bias["bin"] == name]
        if len(rows):
            figure = plots.curve_with_band(rows["rate"], rows["bias"], rows["lower"], rows["upper"],
                                           "sampling rate r", "bias: mean(subsampled - exact LOO)", title,
                                           label=name, ax=None if figure is None else figure.axes[0])
    return figure


@pytest.mark.claim(CLAIM)
def test_raising_the_sampling_rate_removes_the_bias_of_small_subpopulations(case, profile, store, device, seed,
                                                                            conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    planned = {rate: models_at(rate, case.family, profile) for rate in rates_of(profile)}
    resolvable = [rate for rate, models in planned.items() if models is not None]
    if len(resolvable) < 2:
        raise ValueError(f"{case.id}: fewer than two rates fit the budget ({planned})")
    studies = {rate: approximation_error(data, spec, rate, replace(profile, subsampled_models=planned[rate]), store,
                                         device, seed) for rate in resolvable}
    errors = {rate: study.table for rate, study in studies.items()}
    study = studies[resolvable[-1]]
    # The exact-LOO ensemble is the same at every rate: count it once.
    loo_models = study.models - planned[resolvable[-1]]
    models = loo_models + sum(planned[r] for r in resolvable)
    low, high = resolvable[0], resolvable[-1]
    decisive = small_bias_change(studies, high, low, f"bias of small sub-populations at r={low} minus at r={high}",
                                 data, seed)
    control = Control(same_rate_control(studies[low], data, f"bias of small sub-populations at r={low}, one half of "
                                                            f"its models minus the other", seed),
                      f"the change of rate: r={low} against itself, two random halves of its models")
    bias = bias_by_bin(errors)
    small = bias[bias["bin"] == "small"]
    trend = stats.spearman(small["rate"], small["bias"])
    further = [Statistic.from_interval("Spearman of bias(small) with the rate", trend, unit="rates",
                                       note="negative when the bias falls as r rises; Fisher z interval (zero width "
                                            "at -1 or 1)")]
    last = small[small["rate"] == high].iloc[0]
    further.append(Statistic(f"bias of small sub-populations at r={high}", last["bias"], last["lower"],
                             last["upper"], int(last["points"]), unit="points", note="0 when the bias is removed"))
    if 0.5 in errors and 0.9 in errors:
        further.append(small_bias_change(studies, 0.9, 0.5, "bias of small sub-populations at r=0.5 minus at r=0.9",
                                         data, seed, note="the reviews of IMN26 saw the error flat between r = 0.5 and 0.9 "
                                              "on CIFAR-10"))
    unresolvable = [rate for rate, models in planned.items() if models is None]
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decisive, threshold=THRESHOLD,
        statistics=further, control=control,
        paper={"figure": "raising r toward LOO (e.g. r = 0.95) removes the bias",
               "source": "IMN26 (abstract and reviews)",
               "reviews": "error flat between r = 0.5 and 0.9 on CIFAR-10 (reviews of IMN26)"},
        models_trained=models,
        notes=[f"{len(study.loo)} points scored by exact LOO; rates {resolvable} with k = "
               + ", ".join(f"{planned[r]}" for r in resolvable)
               + f" models, so every point is left out of at least {MIN_MODELS_OUT} models",
               "bias of small sub-populations by rate: "
               + ", ".join(f"r={r}: {b:.3f}" for r, b in zip(small["rate"], small["bias"]))]
              + ([f"rates {unresolvable} unresolvable at this budget: they need "
                  f"{', '.join(str(math.ceil(MIN_MODELS_OUT / (1 - r) - 1e-9)) for r in unresolvable)} models, over "
                  f"{MODEL_BUDGET[case.family] * profile.subsampled_models} for the {case.family} family"]
                 if unresolvable else []),
    )
    conclude(result,
             figures={"bias-vs-rate": bias_figure(bias, f"{case.id}: bias of the subsampled estimator")},
             tables={"bias by rate and sub-population size": bias.round(4)})
