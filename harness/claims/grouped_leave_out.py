"""grouped-leave-out (a harness design claim, not from the papers): grouped leave-out
(:mod:`harness.grouped`) gives the exact leave-one-out scores of its targets, also for members
of small sub-populations, at (G + 1) M models instead of exact LOO's (T + 1) M.

Decisive statistic, an equivalence test on the targets in small sub-populations (2-10):

    D = mean over small targets of (grouped(i) - exact(i)),  [D_lo, D_hi] its 95 % crossed
    bootstrap interval (the grouped models in their pools, the exact LOO models in theirs, the
    small targets by sub-population);  |D| with the image of that interval under |.|.

Threshold: below MARGIN = 0.05, so the claim is supported when the whole interval of D lies
inside (-0.05, 0.05) (two one-sided tests, each at 2.5 %), refuted when it lies wholly outside
on one side. The margin is IMN25 4.2's own tolerance (a point "within 5 % error" of exact LOO
agrees with it).

Negative control: the same equivalence test with FZ20's subsampled estimator in the grouped
design's place; it is biased up on small sub-populations (IMN25 4.2), so a test that finds it
equivalent to exact LOO could not tell a biased estimator from an exact one.

The study (:func:`study`), on synthetic data with known sub-populations: the grouped estimate
(P_in over the base models only) and the exact LOO score of the same targets,

- ridge: exact LOO in closed form for every point (:func:`harness.experiments.loo_scores`,
  ``profile.loo_draws`` draws); the grouped scores come from the ridge models *trained* on
  the grouped masks (their ``train_margin``, never ``loo_margin``), with the same number of
  models per arm, M = ``profile.loo_draws``; targets: ``RIDGE_TARGETS_FACTOR`` x
  ``profile.loo_targets_per_bin`` per size bin;
- MLP: the exact LOO plan of approx-overestimates (the same targets and
  M = ``profile.loo_models_per_target``, shared through the store);

and FZ20's subsampled estimator (r = 0.7, the ensemble approx-overestimates trains) on the same
targets. Also reported: the mean difference from exact LOO per size bin for both estimators,
the pooled-P_in option minus the base-only estimate, and the cost: models the design trains,
(G + 1) M, against exact LOO's (T + 1) M for the same targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import plots, stats
from harness.ensemble import train_ensemble
from harness.experiments import load_or_skip, loo_scores, pick_targets, subsampled_scores
from harness.grouped import grouped_plan, grouped_scores
from harness.profiles import FZ20_RATE, SIZE_BINS, size_bin
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, absolute_value

CLAIM = "grouped-leave-out"
MARGIN = 0.05
THRESHOLD = Threshold(MARGIN, "below",
                      "harness design claim, not from the papers: the margin is IMN25 4.2's tolerance, a score "
                      "within 5 % of exact LOO agrees with it; the whole 95 % interval of the mean difference "
                      "on small sub-populations must lie inside (-0.05, 0.05)")
CONTROL = (f"the grouped design: FZ20's subsampled estimator (r = {FZ20_RATE}) in its place, biased on small "
           f"sub-populations (IMN25 4.2)")
PAPER = {"figure": "none: a harness design claim; the cost it cuts is IMN25's exact LOO study",
         "source": "IMN25 4.2: 200 targets x 100 models (20,000 models) for CIFAR-10 / VGG-6"}
RIDGE_TARGETS_FACTOR = 4     # ridge targets per bin = this x profile.loo_targets_per_bin (LOO is free)
MIN_POINTS_PER_BIN = 2       # a bootstrap needs two values


def small_difference(estimate, exact, small: np.ndarray, clusters: np.ndarray, name: str, models_per_arm: int,
                     seed: int = 0) -> Statistic:
    """Mean of ``estimate`` - ``exact`` over the small targets, crossed bootstrap (module docstring)."""
    def difference(replicate):
        points = replicate.points["small"]
        return {"d": np.nanmean(estimate.rescored(replicate.models["estimate"])[small][points]
                                - exact.rescored(replicate.models["exact"])[small][points])}

    interval = stats.crossed_bootstrap(difference, {"estimate": estimate.model_groups, "exact": exact.model_groups},
                                       {"small": stats.Points(clusters[small])}, seed=seed)["d"]
    return Statistic.from_interval(name, interval, models_per_arm={"models per arm (M)": models_per_arm})


def decide(grouped, exact, subsampled, small: np.ndarray, clusters: np.ndarray, models_per_arm: int,
           seed: int = 0) -> Decision:
    """From the grouped, exact LOO and subsampled scores of the same targets (with their model rows),
    which targets are in small sub-populations, and every target's sub-population."""
    signed = small_difference(grouped, exact, small, clusters, "mean grouped - exact LOO, small sub-populations",
                              models_per_arm, seed)
    control = small_difference(subsampled, exact, small, clusters,
                               f"mean subsampled (r={FZ20_RATE}) - exact LOO, small sub-populations", models_per_arm,
                               seed)
    return Decision(absolute_value(signed), THRESHOLD, Control(absolute_value(control), CONTROL), [signed])


def mean_difference(name: str, estimate: np.ndarray, exact: np.ndarray, note: str = "") -> Statistic:
    return Statistic.from_interval(name, stats.bootstrap_mean(estimate - exact), note=note)


def exact_reference(data, spec, profile, store, device, seed=0):
    """Exact LOO scores, their targets and the models per arm the grouped design should use."""
    exact, ensemble = loo_scores(data, spec, profile, store, device, seed)
    if spec.family == "ridge":
        targets = pick_targets(data, RIDGE_TARGETS_FACTOR * profile.loo_targets_per_bin, seed)
        return exact.at(targets), ensemble.n_models, profile.loo_draws
    return exact, ensemble.n_models, profile.loo_models_per_target


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
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
        raise ValueError(f"{case.id}: only {int(small.sum())} targets in small sub-populations")

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
    cost = Statistic("models saved: exact LOO (T + 1) M over grouped (G + 1) M", saving, saving, saving,
                     models_design, note=f"T = {len(scores.points)} targets in G = {grouped.n_groups} groups, "
                                         f"M = {models_per_target}")
    result = ClaimResult.from_decision(
        decision, statistics=per_bin + [pooled_agreement, cost], claim=CLAIM, case=case.id, dataset=data.name,
        paper=PAPER, models_trained=models_design + exact_models + sub_ensemble.n_models,
        notes=[
            f"{len(scores.points)} targets ({', '.join(f'{b}: {int((bins == b).sum())}' for b in SIZE_BINS)}) "
            f"in {grouped.n_groups} compatible groups of sizes {sorted(len(g) for g in grouped.groups)}; "
            f"min distance d = {grouped.min_distance:.3g} (2 x median nearest-neighbour distance)",
            f"grouped design: {models_design} models = (G + 1) M; exact LOO for the same targets at the same M: "
            f"{grouped.exact_loo_models} = (T + 1) M; saving x{saving:.1f}",
            f"exact reference: {exact.method} ({exact_models} models); subsampled: {sub_ensemble.n_models} models "
            f"at r = {FZ20_RATE}",
        ])
    title = f"{case.id}: grouped leave-out vs exact LOO"
    table = pd.DataFrame({"bin": bins, "exact": exact.score, "grouped": scores.score,
                          "grouped (pooled P_in)": pooled.score, "subsampled": subsampled.score})
    table["grouped - exact"] = table["grouped"] - table["exact"]
    table["subsampled - exact"] = table["subsampled"] - table["exact"]
    summary = table.groupby("bin").mean().round(3)
    summary.insert(0, "targets", table.groupby("bin").size())
    shown = decision.parts + per_bin
    figures = {"grouped-vs-exact": plots.scatter_with_fit(exact.score, scores.score, "exact LOO score",
                                                          "grouped leave-out score", title),
               "differences-by-bin": plots.interval_bars([s.name.replace("mean ", "").replace(" - exact LOO", "")
                                                          for s in shown],
                                                         [s.estimate for s in shown],
                                                         [s.lower for s in shown], [s.upper for s in shown],
                                                         "mean difference from exact LOO", title)}
    cost_table = pd.DataFrame({"models": [models_design, grouped.exact_loo_models, sub_ensemble.n_models]},
                              index=["grouped (G + 1) M", "exact LOO (T + 1) M", f"subsampled k (r = {FZ20_RATE})"])
    return CaseReport(result, figures, {"mean score by sub-population size": summary, "cost": cost_table})
