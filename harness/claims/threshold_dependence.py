"""threshold-dependence (IMN25 4.1): memorization has no standard threshold, and conclusions
depend on the one chosen: high thresholds pick singleton outliers, low ones whole or partial
sub-populations, and the marginal utility of the selected points changes sign or size.

For each threshold theta the points with score >= theta are removed and M models are trained
per arm (``harness.removal``). FZ20's marginal utility compares the removal with removing as many random
points, so the utility of a threshold is its excess over random removal of the same count,

    excess(theta) = drop(S \\ {i : mem(i) >= theta}) - drop(S \\ random set of the same count),

(the random arm draws its own set for each model). Removing more points costs more whatever
they are, so the plain drop changes across thresholds by the count alone; the excess does
not. Decisive statistic: the pre-specified contrast between the lowest and the highest
threshold that select a point, as a size whatever its sign (the claim is "changes sign or size"),

    D = excess(theta_low) - excess(theta_high),    |D| with the image of D's interval under |.|,

with a crossed bootstrap over model indices (model k of every arm shares its seed) and the test
points by sub-population (``harness.removal``). The claim holds when |D| exceeds a *material*
change:

    material = 1.96 * sqrt(2) * 0.20 % = 0.55 accuracy points.

Why: FZ20's marginal utility is 2.54 +- 0.20 % (IMN25 3.3 quotes it as a mean difference and
"the standard deviation"). Reading 0.20 points as the standard error of the estimate, two such
estimates at different thresholds differ significantly (two-sided, 5 %) once they are more than
1.96 * sqrt(2 * 0.20^2) = 0.55 points apart: a smaller change is one FZ20's own experiment could
not have told from noise. If 0.20 is instead the spread over trials, the standard error and so
the material change are smaller; the reading taken is the one harder on the claim.

Negative control: the same |D| with a second random set of each count in
place of the thresholds' selections, so the scores no longer choose what is removed.

The study (:func:`study`): memorization scores of every training point from FZ20's subsampled
estimator at the case's rate or, for the ridge family without a rate, exact leave-one-out in
closed form; then the arms of :func:`removal_arms` for the profile's ``removal_thresholds`` (on
the real images its ``image_removal_thresholds`` where it has a shorter sweep for them),
``removal_models`` models each. Also reported: the plain drop at every threshold, its range
(biased upward as a maximum of noisy estimates is, and driven by the counts), the shares of
singletons and of sub-population members among the selected points, and which thresholds' drops
are significantly above or below zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import plots, stats
from harness.experiments import describe_scores, load_or_skip, selection_scores
from harness.profiles import FZ20_RESOLVABLE_CHANGE, SIZE_BINS, size_bin
from harness.removal import marginal_utility, random_selections, select_above
from harness.verdict import (CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, absolute_value,
                             undecidable)

CLAIM = "threshold-dependence"
MATERIAL_CHANGE = FZ20_RESOLVABLE_CHANGE
THRESHOLD = Threshold(MATERIAL_CHANGE, "above",
                      "material change: two estimates with FZ20's standard error 0.20 % (2.54 +- 0.20 %, "
                      "IMN25 3.3) differ at the 5 % level beyond 1.96 * sqrt(2) * 0.20 = 0.55 accuracy points")
CONTROL = "the memorization scores: a second random set of each threshold's count in place of its selection"
NAME = "excess utility over random removal at the lowest minus at the highest threshold"
RANDOM, SECOND_RANDOM = "random like theta={}", "second random like theta={}"
PAPER = {"figure": "qualitative: removing high-score points does not change test accuracy, removing low-score "
                   "points does; high thresholds pick singletons, low ones sub-populations", "source": "IMN25 4.1"}


def removal_arms(selections: dict, models: int, seed: int = 0) -> dict:
    """The arms to train: every threshold's selection, and at the lowest and highest threshold two
    random sets of its count (each its own draw per model)."""
    arms = {f"theta={theta}": chosen for theta, chosen in selections.items()}
    for theta in (min(selections), max(selections)):
        chosen = selections[theta]
        for draw, arm in enumerate((RANDOM, SECOND_RANDOM)):
            arms[arm.format(theta)] = random_selections(len(chosen), int(chosen.sum()), models, seed, draw)
    return arms


def decide(utility, selections: dict) -> Decision:
    """From a removal experiment with the arms of :func:`removal_arms` (``selections``: the points
    each threshold selects, only thresholds that select some)."""
    if len(selections) < 2:
        missing = undecidable(f"|{NAME}|", f"only {len(selections)} threshold selects any point")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    low, high = min(selections), max(selections)

    def excess_contrasts(replicate):
        def excess(arm, theta):  # drop(arm) - drop(random of theta's count)
            return (utility.resampled_accuracy(replicate, RANDOM.format(theta))
                    - utility.resampled_accuracy(replicate, arm.format(theta)))
        return {"claim": excess("theta={}", low) - excess("theta={}", high),
                "control": excess(SECOND_RANDOM, low) - excess(SECOND_RANDOM, high)}

    contrasts = utility.bootstrap(excess_contrasts)
    signed = utility.statistic(f"excess utility over random removal at theta={low} minus at theta={high}",
                               contrasts["claim"], note="pre-specified contrast; excess = drop(selected) - "
                                                        "drop(as many random points)")
    control = utility.statistic(f"{signed.name}, second random sets in place of the selections", contrasts["control"])
    return Decision(absolute_value(signed), THRESHOLD, Control(absolute_value(control), CONTROL), [signed])


def sweep_table(utility, selections: dict, bins: np.ndarray) -> pd.DataFrame:
    """One row per threshold: points selected, sub-populations purged, the plain drop with its
    interval, and the share of each size bin among the selected points."""
    rows = []
    for theta, chosen in selections.items():
        drop = utility.drop(f"theta={theta}")
        row = {"theta": theta, "selected": int(chosen.sum()),
               "purged_subpopulations": len(utility.purged_groups(f"theta={theta}")),
               "utility": drop.estimate, "utility_lower": drop.lower, "utility_upper": drop.upper}
        for name in SIZE_BINS:
            row[f"share_{name}"] = float((bins[chosen] == name).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def share_statistic(name: str, members: int, total: int, note: str) -> Statistic:
    """A share of the selected points with its Wilson interval."""
    lower, upper = stats.wilson_interval(members, total)
    return Statistic(name, members / total, lower, upper, total, "points", note)


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    thresholds = profile.removal_thresholds_for(case.on_real_images)
    selections = {theta: select_above(scores, theta) for theta in thresholds}
    selections = {theta: chosen for theta, chosen in selections.items() if chosen.any()}
    models = profile.removal_models
    table, utility, further = None, None, []
    if len(selections) >= 2:
        low, high = min(selections), max(selections)
        utility = marginal_utility(data, spec, removal_arms(selections, models, seed), models, store, device, seed)
        bins = size_bin(data.group_size_train)
        table = sweep_table(utility, selections, bins)
        arms = [f"theta={t}" for t in selections]
        further = [
            utility.statistic("range of marginal utility across thresholds", utility.drop_range(arms),
                              note=f"max minus min of the plain drops over {len(arms)} thresholds selecting points; "
                                   "biased upward and driven by the counts removed"),
            utility.statistic(f"utility at theta={low} minus at theta={high}",
                              utility.drop_difference(f"theta={low}", f"theta={high}"),
                              note="plain drops, not corrected for the counts removed"),
            share_statistic(f"share of singletons among points selected at theta={high}",
                            int((bins[selections[high]] == "singleton").sum()), int(selections[high].sum()),
                            "IMN25 4.1: high thresholds capture singleton outliers"),
            share_statistic(f"share of sub-population members (size >= 2) selected at theta={low}",
                            int(np.isin(bins[selections[low]], ["small", "large"]).sum()),
                            int(selections[low].sum()),
                            "IMN25 4.1: low thresholds capture entire or partial sub-populations"),
        ] + [utility.statistic(f"marginal utility at theta={t}", utility.drop(f"theta={t}")) for t in selections]
    decision = decide(utility, selections)
    negative = [] if table is None else table.loc[table["utility_upper"] < 0, "theta"].tolist()
    positive = [] if table is None else table.loc[table["utility_lower"] > 0, "theta"].tolist()
    result = ClaimResult.from_decision(
        decision, statistics=further, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=score_models + (utility.models if utility is not None else 0),
        notes=[f"{describe_scores(case.rate, score_models)}; "
               f"{models} models per arm; accuracies as fractions (0.01 = 1 point)",
               f"thresholds selecting no point (left out): "
               f"{[t for t in thresholds if t not in selections] or 'none'}",
               f"utility significantly > 0 at theta {positive or 'none'}; significantly < 0 at theta "
               f"{negative or 'none'} (a sign change needs both)"])
    if table is None:
        return CaseReport(result)
    title = f"{case.id}: marginal utility by threshold"
    figures = {"utility-vs-threshold": plots.curve_with_band(
                   table["theta"], table["utility"], table["utility_lower"], table["utility_upper"],
                   "memorization threshold theta", "accuracy drop: acc(S) - acc(S \\ selected)", title),
               "selected-by-size": plots.selected_by_size(table, f"{case.id}: who is selected")}
    return CaseReport(result, figures, {"sweep": table.round(4)})
