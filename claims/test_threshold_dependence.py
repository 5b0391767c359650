"""threshold-dependence (IMN25 4.1): memorization has no standard threshold, and conclusions
depend on the one chosen: high thresholds pick singleton outliers, low ones whole or partial
sub-populations, and the marginal utility of the selected points changes sign or size.

Per case, memorization scores of every training point from FZ20's subsampled estimator
(r = 0.7), or for the ridge case without a rate exact leave-one-out; for each threshold theta
the points with score >= theta are removed and M models are trained per arm
(``harness.removal``). FZ20's marginal utility compares the removal with removing as many random
points, so the utility of a threshold is its excess over random removal of the same count,

    excess(theta) = drop(S \ {i : mem(i) >= theta}) - drop(S \ random set of the same count),

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

Reported beside it: the plain drop at every threshold, its range (max minus min, biased upward
as a maximum of noisy estimates is, and driven by the counts), the shares of singletons / small /
large sub-population members among the selected points (IMN25's first two parts) and whether
any threshold's drop is significantly negative.

Negative control (``harness.controls``): the same |D| with a second random set of each count in
place of the thresholds' selections, so the scores no longer choose what is removed.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from harness import plots, stats
from harness.experiments import Case, load_dataset
from harness.profiles import FZ20_RATE, SIZE_BINS, size_bin
from harness.removal import (
    describe_scores,
    marginal_utility,
    random_selections,
    select_above,
    selection_scores,
)
from harness.verdict import ClaimResult, Control, Statistic, Threshold, absolute_value, undecidable

CLAIM = "threshold-dependence"
MATERIAL_CHANGE = 1.96 * np.sqrt(2) * 0.0020
THRESHOLD = Threshold(MATERIAL_CHANGE, "above",
                      "material change: two estimates with FZ20's standard error 0.20 % (2.54 +- 0.20 %, "
                      "IMN25 3.3) differ at the 5 % level beyond 1.96 * sqrt(2) * 0.20 = 0.55 accuracy points")
CONTROL = "the memorization scores: a second random set of each threshold's count in place of its selection"
THETAS = {"smoke": (0.1, 0.25, 0.5, 0.9), "default": (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case("synthetic", "ridge")]


def thetas_for(profile) -> tuple:
    return THETAS.get(profile.name, THETAS["default"])


def sweep_table(utility, selections: dict, bins: np.ndarray) -> pd.DataFrame:
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
    lower, upper = stats.wilson_interval(members, total)
    return Statistic(name, members / total, lower, upper, total, "points", note)


def shares_figure(table: pd.DataFrame, title: str):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for name in SIZE_BINS:
        ax.bar(x, table[f"share_{name}"], bottom=bottom, color=plots.BIN_COLOURS[name], label=name)
        bottom += table[f"share_{name}"].to_numpy()
    ax.set_xticks(x, [f"{t:g}\n(n={n})" for t, n in zip(table["theta"], table["selected"])], fontsize=7)
    ax.set_xlabel("memorization threshold theta (points selected)")
    ax.set_ylabel("share of selected points")
    ax.set_title(title, fontsize=9)
    ax.legend(title="sub-population", fontsize=8)
    fig.tight_layout()
    return fig


@pytest.mark.claim(CLAIM)
def test_marginal_utility_changes_materially_across_thresholds(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    selections = {theta: select_above(scores, theta) for theta in thetas_for(profile)}
    selections = {theta: chosen for theta, chosen in selections.items() if chosen.any()}
    models = profile.removal_models
    if len(selections) < 2:
        decisive, table, utility = undecidable("|excess utility at the lowest minus at the highest threshold|",
                                               f"only {len(selections)} threshold selects any point"), None, None
        further, control = [], Control(decisive, CONTROL)
    else:
        low, high = min(selections), max(selections)
        random_arms = {f"{draw} like theta={t}": random_selections(data.n_train, int(selections[t].sum()), models,
                                                                    seed, number)
                       for t in (low, high) for number, draw in enumerate(("random", "second random"))}
        utility = marginal_utility(data, spec, {f"theta={t}": c for t, c in selections.items()} | random_arms,
                                   models, store, device, seed)
        bins = size_bin(data.group_size_train)
        table = sweep_table(utility, selections, bins)
        arms = [f"theta={t}" for t in selections]

        def excess_contrasts(replicate):
            def excess(arm, theta):  # drop(arm) - drop(random of theta's count)
                return (utility.resampled_accuracy(replicate, f"random like theta={theta}")
                        - utility.resampled_accuracy(replicate, arm.format(theta)))
            return {"claim": excess("theta={}", low) - excess("theta={}", high),
                    "control": excess("second random like theta={}", low) - excess("second random like theta={}", high)}

        contrasts = utility.bootstrap(excess_contrasts)
        signed = utility.statistic(f"excess utility over random removal at theta={low} minus at theta={high}",
                                   contrasts["claim"], note="pre-specified contrast; excess = drop(selected) - "
                                                            "drop(as many random points)")
        decisive = absolute_value(signed)
        control = Control(absolute_value(utility.statistic(f"{signed.name}, second random sets in place of the "
                                                           f"selections", contrasts["control"])), CONTROL)
        further = [
            signed,
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
    negative = [] if table is None else table.loc[table["utility_upper"] < 0, "theta"].tolist()
    positive = [] if table is None else table.loc[table["utility_lower"] > 0, "theta"].tolist()
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decisive, threshold=THRESHOLD,
        statistics=further, control=control,
        paper={"figure": "qualitative: removing high-score points does not change test accuracy, removing "
                         "low-score points does; high thresholds pick singletons, low ones sub-populations",
               "source": "IMN25 4.1"},
        models_trained=score_models + (utility.models if utility is not None else 0),
        notes=[f"{describe_scores(case.rate, score_models)}; "
               f"{models} models per arm; accuracies as fractions (0.01 = 1 point)",
               f"thresholds selecting no point (left out): "
               f"{[t for t in thetas_for(profile) if t not in selections] or 'none'}",
               f"utility significantly > 0 at theta {positive or 'none'}; significantly < 0 at theta "
               f"{negative or 'none'} (a sign change needs both)"],
    )
    figures, tables = {}, {}
    if table is not None:
        title = f"{case.id}: marginal utility by threshold"
        figures = {"utility-vs-threshold": plots.curve_with_band(
                       table["theta"], table["utility"], table["utility_lower"], table["utility_upper"],
                       "memorization threshold theta", "accuracy drop: acc(S) - acc(S \\ selected)", title),
                   "selected-by-size": shares_figure(table, f"{case.id}: who is selected")}
        tables = {"sweep": table.round(4)}
    conclude(result, figures=figures, tables=tables)
