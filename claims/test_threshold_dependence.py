"""threshold-dependence (IMN25 4.1): memorization has no standard threshold, and conclusions
depend on the one chosen: high thresholds pick singleton outliers, low ones whole or partial
sub-populations, and the marginal utility of the selected points changes sign or size.

Per case, memorization scores of every training point from FZ20's subsampled estimator
(r = 0.7), or for the ridge case without a rate exact leave-one-out; for each threshold theta
the points with score >= theta are removed and M models are trained per arm
(``harness.removal``). The decision (the excess utility over random removal of the same count,
lowest against highest threshold, against a material change of 0.55 points) and its negative
control are ``harness.claims.threshold_dependence``.

Reported beside it: the plain drop at every threshold, its range (max minus min, biased upward
as a maximum of noisy estimates is, and driven by the counts), the shares of singletons / small /
large sub-population members among the selected points (IMN25's first two parts) and whether
any threshold's drop is significantly negative.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import plots
from harness.experiments import Case, load_dataset
from harness.profiles import FZ20_RATE, size_bin
from harness.removal import (
    describe_scores,
    marginal_utility,
    select_above,
    selection_scores,
)
from harness.claims.threshold_dependence import CLAIM, decide, removal_arms, share_statistic, sweep_table
from harness.verdict import ClaimResult


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case("synthetic", "ridge")]


@pytest.mark.claim(CLAIM)
def test_marginal_utility_changes_materially_across_thresholds(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    selections = {theta: select_above(scores, theta) for theta in profile.removal_thresholds}
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
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=decision.parts + further, control=decision.control,
        paper={"figure": "qualitative: removing high-score points does not change test accuracy, removing "
                         "low-score points does; high thresholds pick singletons, low ones sub-populations",
               "source": "IMN25 4.1"},
        models_trained=score_models + (utility.models if utility is not None else 0),
        notes=[f"{describe_scores(case.rate, score_models)}; "
               f"{models} models per arm; accuracies as fractions (0.01 = 1 point)",
               f"thresholds selecting no point (left out): "
               f"{[t for t in profile.removal_thresholds if t not in selections] or 'none'}",
               f"utility significantly > 0 at theta {positive or 'none'}; significantly < 0 at theta "
               f"{negative or 'none'} (a sign change needs both)"],
    )
    figures, tables = {}, {}
    if table is not None:
        title = f"{case.id}: marginal utility by threshold"
        figures = {"utility-vs-threshold": plots.curve_with_band(
                       table["theta"], table["utility"], table["utility_lower"], table["utility_upper"],
                       "memorization threshold theta", "accuracy drop: acc(S) - acc(S \\ selected)", title),
                   "selected-by-size": plots.selected_by_size(table, f"{case.id}: who is selected")}
        tables = {"sweep": table.round(4)}
    conclude(result, figures=figures, tables=tables)
