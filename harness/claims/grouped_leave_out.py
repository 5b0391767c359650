"""grouped-leave-out (a harness design claim, not from the papers): grouped leave-out
(:mod:`harness.grouped`) gives the exact leave-one-out scores of its targets, also for members
of small sub-populations, at (G + 1) M models instead of exact LOO's (T + 1) M.

Decisive statistic, an equivalence test on the targets in small sub-populations (2-10):

    D = mean over small targets of (grouped(i) - exact(i)),  [D_lo, D_hi] its 95 % crossed
    bootstrap interval (the grouped models in their pools, the exact LOO models in theirs, the
    small targets by sub-population);  |D| with the image of that interval under |.|.

A mean can hide per-point errors of opposite sign, so a second part asks each target's score to
agree, on every target (all size bins), by the root mean square of the per-point errors
b_i = E[grouped(i)] - E[exact(i)]. The squared differences of the estimates would add the models'
noise (at M = 40, a score's standard error is about 0.06, more than the margin), so the mean
square is taken from two independent halves of the models (A, B: every other row of each pool,
for both estimates):

    d_i^h = grouped^h(i) - exact^h(i),    MS = mean over targets of d_i^A d_i^B,
    E[d_i^A d_i^B] = b_i^2   (the halves' noise is independent and of mean 0),
    RMS = sign(MS) sqrt(|MS|),

its interval the image under this monotone map of MS's crossed bootstrap interval (both
estimates' models in their pools, the targets by sub-population within their size bins; each
replicate recomputes both halves from its model weights). RMS is negative where the noise pulls
MS below 0, and it has no variance components (its scale is not MS's), so an inconclusive
per-point part comes without a power statement.

Threshold: both parts below MARGIN = 0.05: the mean part supported when the whole interval of D
lies inside (-0.05, 0.05) (two one-sided tests, each at 2.5 %), the per-point part when the
upper bound of RMS is below 0.05; a part is refuted when its interval lies wholly at or above
0.05. The parts are combined by intersection-union (each at the 95 % level, both must hold: a
refuted part refutes, a part without an interval leaves it undecided, otherwise the part nearest
to failing decides). The margin is IMN25 4.2's own per-point tolerance (a point "within 5 %
error" of exact LOO agrees with it; "only 8.5 % of points" of the subsampled estimator do).

Negative control: the same two parts with FZ20's subsampled estimator in the grouped design's
place; it is biased up on small sub-populations (IMN25 4.2), so a test that finds it
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
from harness.experiments import load_or_skip, loo_scores, pick_targets, scores_loo_in_closed_form, subsampled_scores
from harness.grouped import grouped_plan, grouped_scores
from harness.profiles import FZ20_RATE, SIZE_BINS, size_bin
from harness.verdict import (CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, absolute_value,
                             intersection_union)

CLAIM = "grouped-leave-out"
MARGIN = 0.05
THRESHOLD = Threshold(MARGIN, "below",
                      "harness design claim, not from the papers: the margin is IMN25 4.2's per-point tolerance, "
                      "a score within 5 % of exact LOO agrees with it; both parts must hold: the whole 95 % "
                      "interval of the mean difference on small sub-populations inside (-0.05, 0.05), and the "
                      "upper bound of the per-point root mean square error (noise removed) on every target below "
                      "0.05")
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


def halves(model_groups: np.ndarray) -> np.ndarray:
    """0 or 1 per model row: every other row of each pool (module docstring)."""
    model_groups = np.asarray(model_groups)
    position = np.empty(len(model_groups), dtype=np.int64)
    for pool in np.unique(model_groups):
        rows = np.flatnonzero(model_groups == pool)
        position[rows] = np.arange(len(rows))
    return position % 2


def signed_root(x: float) -> float:
    return float(np.sign(x) * np.sqrt(abs(x)))


def per_point_error(estimate, exact, clusters: np.ndarray, strata: np.ndarray, name: str, seed: int = 0) -> Statistic:
    """RMS of the per-point errors of ``estimate`` against ``exact``, the models' noise removed by
    two independent halves of the models (module docstring), over every target."""
    half_of = {"estimate": halves(estimate.model_groups), "exact": halves(exact.model_groups)}

    def mean_product(replicate):
        points = replicate.points["targets"]
        differences = [estimate.rescored(replicate.models["estimate"] * (half_of["estimate"] == half))[points]
                       - exact.rescored(replicate.models["exact"] * (half_of["exact"] == half))[points]
                       for half in (0, 1)]
        return {"ms": np.nanmean(differences[0] * differences[1])}

    interval = stats.crossed_bootstrap(mean_product, {"estimate": estimate.model_groups, "exact": exact.model_groups},
                                       {"targets": stats.Points(clusters, strata)}, seed=seed)["ms"]
    lower, upper = ((np.nan, np.nan) if interval.degenerate or np.isnan(interval.lower)
                    else (signed_root(interval.lower), signed_root(interval.upper)))
    return Statistic(name, signed_root(interval.estimate), lower, upper, interval.n, unit="points",
                     note=f"sign(MS) sqrt(|MS|), MS = {interval.estimate:.3g} [{interval.lower:.3g}, "
                          f"{interval.upper:.3g}] the mean product of two model halves' per-point differences "
                          f"({interval.method})",
                     components={"scale": "signed square"})


def decide(grouped, exact, subsampled, small: np.ndarray, clusters: np.ndarray, models_per_arm: int,
           seed: int = 0, bins: np.ndarray | None = None) -> Decision:
    """From the grouped, exact LOO and subsampled scores of the same targets (with their model rows),
    which targets are in small sub-populations, every target's sub-population and (optionally) its
    size bin, the per-point part's strata (default: small or not)."""
    strata = np.asarray(small, dtype=bool).astype(int) if bins is None else np.asarray(bins)
    signed = small_difference(grouped, exact, small, clusters, "mean grouped - exact LOO, small sub-populations",
                              models_per_arm, seed)
    per_point = per_point_error(grouped, exact, clusters, strata,
                                "per-point RMS error grouped vs exact LOO (model noise removed), all targets", seed)
    control_signed = small_difference(subsampled, exact, small, clusters,
                                      f"mean subsampled (r={FZ20_RATE}) - exact LOO, small sub-populations",
                                      models_per_arm, seed)
    control_per_point = per_point_error(subsampled, exact, clusters, strata,
                                        f"per-point RMS error subsampled (r={FZ20_RATE}) vs exact LOO (model noise "
                                        f"removed), all targets", seed)
    mean_part = absolute_value(signed)
    control = intersection_union([absolute_value(control_signed), control_per_point], THRESHOLD)
    return Decision(intersection_union([mean_part, per_point], THRESHOLD), THRESHOLD, Control(control, CONTROL),
                    [mean_part, signed, per_point])


def mean_difference(name: str, estimate: np.ndarray, exact: np.ndarray, note: str = "") -> Statistic:
    return Statistic.from_interval(name, stats.bootstrap_mean(estimate - exact), note=note)


def exact_reference(data, spec, profile, store, device, seed=0):
    """Exact LOO scores, their targets and the models per arm the grouped design should use."""
    exact, ensemble = loo_scores(data, spec, profile, store, device, seed)
    if scores_loo_in_closed_form(spec):
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

    decision = decide(scores, exact, subsampled, small, data.group_train[scores.points], models_per_target, seed,
                      bins)
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
    shown = [part for part in decision.parts if part.name.startswith("mean ")] + per_bin
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
