"""approx-overestimates (IMN25 4.2): the subsampled estimator (r < 1) overestimates memorization
relative to exact leave-one-out; small sub-populations (2 to 10 members) are hit hardest,
singletons and large sub-populations hardly at all.

With error = subsampled - exact LOO on the same points, the claim holds when all five parts
are above zero (an intersection-union test, each at the 95 % level, so no multiplicity
correction is needed):

    mean error(small) > 0,  mean error(small) - mean error(singletons) > 0,
    mean error(small) - mean error(large) > 0,                        (hit hardest)
    MARGIN - |mean error(singletons)| > 0,  MARGIN - |mean error(large)| > 0,   (hardly at all)

the last two equivalence tests with MARGIN = 0.05, IMN25 4.2's own tolerance (a point "within
5 % error" of exact LOO agrees with it). Where every model is right (or every model wrong) on
every point of the bin, under both estimators, the bootstrap has nothing to resample; such a
part is bounded instead by zero-failure bounds on each of the four rates (in and out of each
estimator; ``harness.stats.zero_failure_bound``, Bonferroni over the four), each resting on the
fewer of its models and the bin's sub-populations (:func:`constant_bin_bound`). The decisive statistic is the part with the smallest
lower bound (or one whose whole interval is at or below zero, which refutes the claim); a part
whose bin has fewer than MIN_POINTS_PER_BIN points leaves the claim undecided. Intervals: crossed bootstrap over the
models of both estimates and the scored points by sub-population within their size bins
(``harness.experiments.ApproximationStudy.bootstrap``).

Negative control: the same parts with the size bins shuffled among the scored points.

A finding the papers do not report (:func:`decomposition`): the subsampled
estimator at rate r estimates memorization for a training set of size r n, so its error against
exact LOO at size n splits in two, per size bin,

    subsampled - LOO(n) = [subsampled - LOO(r n)] + [LOO(r n) - LOO(n)],
                           estimator's own error     training-size effect

where LOO(r n) is, for the ridge family, each subsampled model's own closed-form refit without
the point (paired on the same draws, ``harness.experiments.paired_loo``), and for a network a
LOO plan of its own on random subsets of round(r n) points (``harness.masks.loo_plan_on_subsets``,
about M / r subsets for M models in each target's P_in; its models a third pool of the
bootstrap), on the data sets of ``profiles.NETWORK_DECOMPOSITION_DATA`` at FZ20's rate, as it
costs another LOO plan. The first is the estimator's error at the
size it estimates; the second is how much more a point is memorized by a model trained on r n
points than on n, which is what "overestimation" mostly is if the first is near zero.
"""

from __future__ import annotations

import math

import numpy as np

from harness import controls, estimators, image_plots, plots, stats
from harness.ensemble import train_ensemble
from harness.experiments import approximation_error, load_or_skip, subpopulation_summary
from harness.masks import loo_plan_on_subsets
from harness.profiles import FZ20_RATE, NETWORK_DECOMPOSITION_DATA, SIZE_BINS
from harness.verdict import (CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, intersection_union,
                             margin_left, undecidable)

CLAIM = "approx-overestimates"
MARGIN = 0.05
THRESHOLD = Threshold(0.0, "above", "IMN25 4.2: small sub-populations are overestimated, and more than "
                                    "singletons and large sub-populations (the sign is the claim), which are "
                                    "hardly affected (mean error within +-0.05, IMN25 4.2's 'within 5 % error')")
CONTROL = "size bins shuffled among the scored points"
PAPER = {"figure": "only 8.5 % of points within 5 % error; errors up to 57.5 %; false positives 16 % at 0.25 and "
                   "70 % at 0.45; small sub-populations most affected",
         "source": "IMN25 4.2 (CIFAR-10, VGG-6, 200 points x 100 LOO models, 4,000 subsampled)"}
MIN_POINTS_PER_BIN = 3
NAMES = {"small": "overestimation of small sub-populations",
         "singleton": "overestimation small minus singleton", "large": "overestimation small minus large",
         "singleton alone": "overestimation of singletons", "large alone": "overestimation of large sub-populations"}
BINS_OF = {"small": ("small",), "singleton": ("small", "singleton"), "large": ("small", "large"),
           "singleton alone": ("singleton",), "large alone": ("large",)}


def _rate_bounds(rows, columns: np.ndarray, clusters: int, alpha: float) -> tuple[float, float, int] | None:
    """(lower, upper, units) for a rate every observation of which is the same (None if any
    differs or there is none): all right gives [1 - u, 1], all wrong [0, u]."""
    observed, hits = rows[0][:, columns] > 0, rows[1][:, columns] > 0
    if not observed.any() or not (hits[observed].all() or not hits[observed].any()):
        return None
    units = min(int(observed.any(axis=1).sum()), clusters)
    bound = stats.zero_failure_bound(units, alpha)
    return (1.0 - bound, 1.0, units) if hits[observed].all() else (0.0, bound, units)


def constant_bin_bound(study, bin_name: str, name: str, alpha: float = 0.05) -> Statistic | None:
    """Mean error of a size bin whose four rates (P_in and P_out of each estimator) are each the
    same in every observation, bounded by interval arithmetic on their zero-failure bounds (module
    docstring); None if any rate varies, when the crossed bootstrap has something to resample."""
    bins = study.table["bin"].to_numpy()
    columns = np.flatnonzero(bins == bin_name)
    clusters = len(np.unique(study.points.unit_of_point[columns]))
    rates = {}
    for estimator, scores in (("subsampled", study.subsampled), ("loo", study.loo)):
        r = scores.rows
        for arm, arrays in (("in", (r.in_, r.hit_in)), ("out", (r.out, r.hit_out))):
            rates[estimator, arm] = _rate_bounds(arrays, columns, clusters, alpha / 4)
            if rates[estimator, arm] is None:
                return None
    score = {e: (rates[e, "in"][0] - rates[e, "out"][1], rates[e, "in"][1] - rates[e, "out"][0])
             for e in ("subsampled", "loo")}
    lower, upper = score["subsampled"][0] - score["loo"][1], score["subsampled"][1] - score["loo"][0]
    units = min(rate[2] for rate in rates.values())
    needed = stats.units_for_zero_failure_bound(MARGIN / 2, alpha / 4)
    models = min(int(arrays.any(axis=1).sum()) for scores in (study.subsampled, study.loo)
                 for arrays in (scores.rows.in_[:, columns] > 0, scores.rows.out[:, columns] > 0))
    return Statistic(name, float(np.mean(study.table["error"].to_numpy()[columns])), lower, upper, units,
                     "models and sub-populations",
                     f"every model right (or wrong) on every point of the bin: zero-failure bounds over "
                     f"{units} units, the fewer of models ({models}) and sub-populations ({clusters})",
                     {"zero_failure": {"units": units, "needed": needed, "models": models, "clusters": clusters}})


def contrasts(study, seed: int = 0, bins=None) -> list[Statistic]:
    """The three contrasts of the module docstring from one crossed bootstrap (``bins``: the
    scored points' size bins, the study's own by default)."""
    own_bins = bins is None   # a control's shuffled bins have no constant-bin bound
    bins = study.table["bin"].to_numpy() if bins is None else np.asarray(bins)

    def means(replicate):
        points = replicate.points["scored"]
        error, bin_of = study.errors(replicate)[points], bins[points]
        mean = {b: np.nanmean(error[bin_of == b]) if (bin_of == b).any() else np.nan for b in SIZE_BINS}
        return {"small": mean["small"], "singleton": mean["small"] - mean["singleton"],
                "large": mean["small"] - mean["large"], "singleton alone": mean["singleton"],
                "large alone": mean["large"]}

    intervals = study.bootstrap(means, seed=seed)
    out = []
    for part, name in NAMES.items():
        short = [b for b in BINS_OF[part] if (bins == b).sum() < MIN_POINTS_PER_BIN]
        if short:
            out.append(undecidable(name, f"only {', '.join(f'{(bins == b).sum()} {b}' for b in short)} scored "
                                         f"point(s); the part needs {MIN_POINTS_PER_BIN} in each bin"))
            continue
        statistic = Statistic.from_interval(name, intervals[part], models_per_arm=study.models_per_arm)
        if part.endswith("alone") and intervals[part].degenerate and own_bins:
            statistic = constant_bin_bound(study, BINS_OF[part][0], name) or statistic
        out.append(margin_left(statistic, MARGIN) if part.endswith("alone") else statistic)
    return out


def decide(study, seed: int = 0) -> Decision:
    """From an ``ApproximationStudy`` (exact LOO and subsampled rows of the same points, their bins)."""
    parts = contrasts(study, seed)
    shuffled = contrasts(study, seed, controls.shuffled(study.table["bin"], seed))
    return Decision(intersection_union(parts, THRESHOLD), THRESHOLD,
                    Control(intersection_union(shuffled, THRESHOLD), CONTROL), parts)


def decomposition(study, seed: int = 0, at_size=None) -> list[Statistic]:
    """The two parts of the error per size bin (module docstring), from one crossed bootstrap;
    ``at_size``: a network's exact LOO at r n on the study's points (its own models). Empty
    without either that or the ridge family's paired LOO."""
    paired = study.paired is not None
    if not paired and at_size is None:
        return []
    bins = study.table["bin"].to_numpy()
    pools = {"loo": study.loo.model_groups, "subsampled": study.subsampled.model_groups}
    if not paired:
        pools["loo at r n"] = at_size.model_groups

    def parts(replicate):
        points = replicate.points["scored"]
        subsampled = study.subsampled.rescored(replicate.models["subsampled"])
        at_r_n = (study.paired.rescored(replicate.models["subsampled"]) if paired   # the same model rows
                  else at_size.rescored(replicate.models["loo at r n"]))
        exact = study.loo.rescored(replicate.models["loo"])
        out = {}
        for b in SIZE_BINS:
            chosen = points[bins[points] == b]
            out[f"own {b}"] = np.nanmean(subsampled[chosen] - at_r_n[chosen]) if len(chosen) else np.nan
            out[f"size {b}"] = np.nanmean(at_r_n[chosen] - exact[chosen]) if len(chosen) else np.nan
        return out

    intervals = stats.crossed_bootstrap(parts, pools, {"scored": study.points}, seed=seed)
    models = study.models_per_arm | ({} if paired else {"LOO models at r n": len(at_size.model_groups)})
    how = "paired" if paired else "on subsets of its own"
    out = []
    for b in SIZE_BINS:
        if (bins == b).sum() >= MIN_POINTS_PER_BIN:
            out += [Statistic.from_interval(f"estimator's own error (subsampled - exact LOO at r n, {how}), {b}",
                                            intervals[f"own {b}"], models_per_arm=models),
                    Statistic.from_interval(f"training-size effect (exact LOO at r n - at n), {b}",
                                            intervals[f"size {b}"], models_per_arm=models)]
    return out


def exact_loo_at_rate(data, spec, rate: float, points: np.ndarray, profile, store, device, seed: int = 0):
    """A network's exact LOO at training size r n on ``points`` (module docstring), and its models."""
    draws = math.ceil(profile.loo_models_per_target / rate)
    plan = loo_plan_on_subsets(data.n_train, points, draws, rate, seed)
    ensemble = train_ensemble(data, spec, plan, store, seed, device)
    return estimators.exact_loo(ensemble.masks, ensemble.arrays["train_margin"], plan.left_out, points), \
        ensemble.n_models


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    """A case's report; claims/test_paper_scale.py runs it at the papers' scale."""
    data = load_or_skip(case.data, profile.name)
    errors = approximation_error(data, case.spec(profile), case.rate, profile, store, device, seed)
    table = errors.table
    decision = decide(errors, seed)
    at_size, more_models = None, 0
    if errors.paired is None and case.data in NETWORK_DECOMPOSITION_DATA and case.rate == FZ20_RATE:
        at_size, more_models = exact_loo_at_rate(data, case.spec(profile), case.rate, errors.loo.points, profile,
                                                 store, device, seed)
    result = ClaimResult.from_decision(
        decision, decomposition(errors, seed, at_size) + paper_statistics(table),
        claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=errors.models + more_models,
        notes=[f"{len(table)} points scored by exact LOO ({errors.loo.method}); sub-population sizes "
               f"{'known' if case.data.startswith('synthetic') else 'inferred by clustering within each class'}: "
               f"{subpopulation_summary(data)}",
               "mean error by bin: " + ", ".join(f"{b} {g:.3f} (n={int(c)})" for b, (g, c) in
                                                   table.groupby("bin")["error"].agg(["mean", "count"]).iterrows())]
              + [f"{key}: {data.meta[key]}" for key in ("embedding", "subpopulations") if key in data.meta],
    )
    title = f"{case.id}: subsampled vs exact LOO"
    figures = {"error-histogram": plots.error_histogram(table, title),
               "loo-vs-subsampled": plots.loo_vs_subsampled(table, title)}
    if data.is_image:
        figures["highest-memorization images"] = image_plots.highest_memorization_grid(data, errors.loo, per_class=8)
    tables = {"mean error by sub-population size": table.groupby("bin")[["loo", "subsampled", "error", "spp"]]
              .mean().round(3)}
    return CaseReport(result, figures, tables)


def largest_overestimation(table) -> Statistic:
    """The largest error, with the interval of that point's own difference of scores: the box of
    its two intervals, [sub_lower - loo_upper, sub_upper - loo_lower] (conservative)."""
    worst = table.loc[table["error"].idxmax()]
    return Statistic("largest overestimation", float(worst["error"]),
                     max(-1.0, float(worst["sub_lower"] - worst["loo_upper"])),
                     min(1.0, float(worst["sub_upper"] - worst["loo_lower"])), len(table), unit="points",
                     note=f"point {int(worst['point'])}; IMN25 4.2: up to 57.5 %")


def paper_statistics(table) -> list[Statistic]:
    n = len(table)
    within = int((table["error"].abs() < 0.05).sum())
    low, high = stats.wilson_interval(within, n)
    out = [Statistic("share of points within 5 % error", within / n, low, high, n, unit="points",
                     note="IMN25 4.2: 8.5 % (abstract: under 6 %)"),
           largest_overestimation(table)]
    for theta, paper in ((0.25, "16 %"), (0.45, "70 % (abstract: up to 93 %)")):
        if (table["subsampled"] >= theta).any():
            rate = stats.rates_at_threshold(table["subsampled"].to_numpy(),
                                            table["loo"].to_numpy() >= theta, theta)["false_discovery_rate"]
            out.append(Statistic.from_interval(f"false positives at threshold {theta}", rate,
                                 note=f"share flagged by the subsampled score but not by LOO; IMN25 4.2: {paper}"))
    k = min(100, len(table) // 4)
    if k >= 2:
        ranked = table.sample(frac=1.0, random_state=0).sort_values("error", kind="stable")  # ties at random
        for label, rows, paper in (("highest", ranked.tail(k), "0.77 +- 0.26"),
                                   ("lowest", ranked.head(k), "0.32 +- 0.26")):
            out.append(Statistic.from_interval(f"SPP of the {k} {label}-error points",
                                               stats.bootstrap_mean(rows["spp"].to_numpy()),
                                               note=f"IMN25 4.2: {paper} for 100 points"))
    return out
