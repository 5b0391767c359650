"""sampling-rate-bias (IMN26): raising the sampling rate r of Feldman & Zhang's subsampled
estimator toward leave-one-out (e.g. r = 0.95) removes its bias.

Per case and rate r, the subsampled scores and exact LOO scores of the same points
(:func:`harness.experiments.approximation_error`); the decision (the bias of small
sub-populations falls from the lowest to the highest rate *and* lies within a margin of zero at
the highest) and its negative control are ``harness.claims.sampling_rate_bias``. Beside it: a
Spearman correlation of bias(small) with r across the rates, and the change between r = 0.5 and
r = 0.9, where the reviews of IMN26 saw the error flat on CIFAR-10.

Models per rate: at rate r each point is left out of k (1 - r) models, so k is raised to
at least MIN_MODELS_OUT / (1 - r) (r = 0.99 needs 1,000 models for 10). P_out is unbiased
for any count, and a bin's bias averages many points, so 10 suffice for the bin means the
claim is about (not for single points' scores). A rate whose k exceeds the family's budget
(RATE_MODEL_BUDGET times the profile's k) is reported as unresolvable and left out.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from harness import plots, stats
from harness.claims.sampling_rate_bias import CLAIM, MIN_POINTS_PER_BIN, bias_contrast, decide, small_points
from harness.experiments import Case, approximation_error, load_dataset
from harness.profiles import MIN_MODELS_OUT, RATE_MODEL_BUDGET, SIZE_BINS
from harness.verdict import ClaimResult, Statistic



def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge")]
    return [Case("synthetic", "ridge"), Case("synthetic-steep", "ridge"), Case("synthetic", "mlp")]


def models_at(rate: float, family: str, profile) -> int | None:
    """k at rate r: the profile's k, raised so each point is out of >= MIN_MODELS_OUT models;
    None when that is over the family's budget."""
    needed = max(profile.subsampled_models, math.ceil(MIN_MODELS_OUT / (1.0 - rate) - 1e-9))
    return needed if needed <= RATE_MODEL_BUDGET[family] * profile.subsampled_models else None


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


@pytest.mark.claim(CLAIM)
def test_raising_the_sampling_rate_removes_the_bias_of_small_subpopulations(case, profile, store, device, seed,
                                                                            conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    planned = {rate: models_at(rate, case.family, profile) for rate in profile.sampling_rates}
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
    decision = decide(studies, seed)
    bias = bias_by_bin(errors)
    small = bias[bias["bin"] == "small"]
    trend = stats.spearman(small["rate"], small["bias"])
    further = decision.parts + [
        Statistic.from_interval("Spearman of bias(small) with the rate", trend, unit="rates",
                                note="negative when the bias falls as r rises; Fisher z interval (zero width at -1 or 1)")]
    if 0.5 in errors and 0.9 in errors and small_points(studies[0.5]).sum() >= MIN_POINTS_PER_BIN:
        flat = bias_contrast(studies[0.5].loo, studies[0.5].subsampled, studies[0.9].subsampled,
                             small_points(studies[0.5]), np.asarray(studies[0.5].points.clusters), seed)["change"]
        further.append(Statistic.from_interval("bias of small sub-populations at r=0.5 minus at r=0.9", flat,
                                               note="the reviews of IMN26 saw the error flat between r = 0.5 and 0.9 "
                                                    "on CIFAR-10"))
    unresolvable = [rate for rate, models in planned.items() if models is None]
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=further, control=decision.control,
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
                  f"{RATE_MODEL_BUDGET[case.family] * profile.subsampled_models} for the {case.family} family"]
                 if unresolvable else []),
    )
    conclude(result,
             figures={"bias-vs-rate": bias_figure(bias, f"{case.id}: bias of the subsampled estimator")},
             tables={"bias by rate and sub-population size": bias.round(4)})
