"""grouped-leave-out (a harness design claim, not from the papers): grouped leave-out
(:mod:`harness.grouped`) gives the exact leave-one-out scores of its targets, also for
members of small sub-populations, at (G + 1) M models instead of exact LOO's (T + 1) M.

Why it is tested: IMN25's LOO study trains 200 targets x 100 models; grouped leave-out
leaves several mutually compatible targets (no shared sub-population, none within a
distance d of another) out of each model. The subsampled estimator's bias on small
sub-populations comes from leaving a point out together with its mates (IMN25 4.2); the
groups never do that, and this test checks that no such bias comes back.

Per case, on synthetic data with known sub-populations, the grouped estimate (P_in over
the base models only) and the exact LOO score of the same targets:

- ridge: exact LOO in closed form for every point (:func:`harness.experiments.loo_scores`,
  ``profile.loo_draws`` draws); the grouped scores come from the ridge models *trained* on
  the grouped masks (their ``train_margin``, never ``loo_margin``), with the same number of
  models per arm, M = ``profile.loo_draws``; targets: ``RIDGE_TARGETS_FACTOR`` x
  ``profile.loo_targets_per_bin`` per size bin;
- MLP: the exact LOO plan of approx-overestimates (the same targets and
  M = ``profile.loo_models_per_target``, shared through the store).

The decision (an equivalence test on the small sub-populations' mean difference from exact
LOO, margin 0.05) and its negative control (FZ20's subsampled estimator in the grouped design's
place) are ``harness.claims.grouped_leave_out``.

Reported beside it: D per size bin, the same difference for FZ20's subsampled estimator
(r = 0.7, the ensemble approx-overestimates trains; it should show its small-sub-population
bias), the pooled-P_in option minus the base-only estimate, and the cost: models the design
trains, (G + 1) M, against exact LOO's (T + 1) M for the same targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness import plots, stats
from harness.ensemble import train_ensemble
from harness.experiments import Case, load_dataset, loo_scores, pick_targets, subsampled_scores
from harness.grouped import grouped_plan, grouped_scores
from harness.profiles import FZ20_RATE, SIZE_BINS, size_bin
from harness.claims.grouped_leave_out import CLAIM, decide
from harness.verdict import ClaimResult, Statistic

RIDGE_TARGETS_FACTOR = 4     # ridge targets per bin = this x profile.loo_targets_per_bin (LOO is free)
MIN_POINTS_PER_BIN = 2       # a bootstrap needs two values


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge")]
    return [Case("synthetic", "ridge"), Case("synthetic-overlapping", "ridge"), Case("synthetic", "mlp")]


def mean_difference(name: str, estimate: np.ndarray, exact: np.ndarray, note: str = "") -> Statistic:
    return Statistic.from_interval(name, stats.bootstrap_mean(estimate - exact), note=note)


def exact_reference(data, spec, profile, store, device, seed=0):
    """Exact LOO scores, their targets and the models per arm the grouped design should use."""
    exact, ensemble = loo_scores(data, spec, profile, store, device, seed)
    if spec.family == "ridge":
        targets = pick_targets(data, RIDGE_TARGETS_FACTOR * profile.loo_targets_per_bin, seed)
        return exact.at(targets), ensemble.n_models, profile.loo_draws
    return exact, ensemble.n_models, profile.loo_models_per_target


@pytest.mark.claim(CLAIM)
def test_grouped_leave_out_matches_exact_loo_on_small_subpopulations(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    exact, exact_models, models_per_target = exact_reference(data, spec, profile, store, device, seed)
    grouped = grouped_plan(data, exact.points, models_per_target)
    ensemble = train_ensemble(data, spec, grouped.plan, store, seed, device)
    scores = grouped_scores(grouped, ensemble.arrays["train_margin"])
    pooled = grouped_scores(grouped, ensemble.arrays["train_margin"], pool_in=True)
    subsampled, sub_ensemble = subsampled_scores(data, spec, FZ20_RATE, profile.subsampled_models, store, device,
                                                 seed)
    exact, subsampled = exact.at(scores.points), subsampled.at(scores.points)
    bins = size_bin(data.group_size_train[scores.points])
    small = bins == "small"
    if small.sum() < MIN_POINTS_PER_BIN:
        pytest.fail(f"only {int(small.sum())} targets in small sub-populations", pytrace=False)

    decision = decide(scores, exact, subsampled, small, data.group_train[scores.points], models_per_target, seed)
    per_bin = []
    for name in SIZE_BINS:
        rows = bins == name
        if rows.sum() >= MIN_POINTS_PER_BIN:
            if name != "small":
                per_bin.append(mean_difference(f"mean grouped - exact LOO, {name}", scores.score[rows],
                                               exact.score[rows]))
            per_bin.append(mean_difference(f"mean subsampled (r={FZ20_RATE}) - exact LOO, {name}",
                                           subsampled.score[rows], exact.score[rows],
                                           note="FZ20's estimator on the same targets (IMN25 4.2: biased up "
                                                "on small sub-populations)"))
    pooled_agreement = mean_difference("mean pooled-P_in - base-only grouped score, all targets", pooled.score,
                                       scores.score, note="pooling P_in over models that left out far-away "
                                                          "groups must not move the scores")
    models_design = grouped.plan.n_models
    saving = grouped.exact_loo_models / models_design
    cost = [
        Statistic("models saved: exact LOO (T + 1) M over grouped (G + 1) M", saving, saving, saving,
                  models_design, note=f"T = {len(scores.points)} targets in G = {grouped.n_groups} groups, "
                                      f"M = {models_per_target}"),
    ]
    models_trained = models_design + exact_models + sub_ensemble.n_models
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=decision.parts + per_bin + [pooled_agreement] + cost, control=decision.control,
        paper={"figure": "none: a harness design claim; the cost it cuts is IMN25's exact LOO study",
               "source": "IMN25 4.2: 200 targets x 100 models (20,000 models) for CIFAR-10 / VGG-6"},
        models_trained=models_trained,
        notes=[
            f"{len(scores.points)} targets ({', '.join(f'{b}: {int((bins == b).sum())}' for b in SIZE_BINS)}) "
            f"in {grouped.n_groups} compatible groups of sizes {sorted(len(g) for g in grouped.groups)}; "
            f"min distance d = {grouped.min_distance:.3g} (2 x median nearest-neighbour distance)",
            f"grouped design: {models_design} models = (G + 1) M; exact LOO for the same targets at the same M: "
            f"{grouped.exact_loo_models} = (T + 1) M; saving x{saving:.1f}",
            f"exact reference: {exact.method} ({exact_models} models); subsampled: {sub_ensemble.n_models} models "
            f"at r = {FZ20_RATE}",
        ],
    )
    title = f"{case.id}: grouped leave-out vs exact LOO"
    table = pd.DataFrame({"bin": bins, "exact": exact.score, "grouped": scores.score,
                          "grouped (pooled P_in)": pooled.score, "subsampled": subsampled.score})
    table["grouped - exact"] = table["grouped"] - table["exact"]
    table["subsampled - exact"] = table["subsampled"] - table["exact"]
    summary = table.groupby("bin").mean().round(3)
    summary.insert(0, "targets", table.groupby("bin").size())
    shown = decision.parts + per_bin
    conclude(result,
             figures={"grouped-vs-exact": plots.scatter_with_fit(exact.score, scores.score, "exact LOO score",
                                                                 "grouped leave-out score", title),
                      "differences-by-bin": plots.interval_bars([s.name.replace("mean ", "").replace(" - exact LOO", "")
                                                                 for s in shown],
                                                                [s.estimate for s in shown],
                                                                [s.lower for s in shown], [s.upper for s in shown],
                                                                "mean difference from exact LOO", title)},
             tables={"mean score by sub-population size": summary,
                     "cost": pd.DataFrame({"models": [models_design, grouped.exact_loo_models,
                                                      sub_ensemble.n_models]},
                                          index=["grouped (G + 1) M", "exact LOO (T + 1) M",
                                                 f"subsampled k (r = {FZ20_RATE})"])})
