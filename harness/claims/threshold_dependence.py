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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import stats
from harness.profiles import SIZE_BINS
from harness.removal import random_selections
from harness.verdict import Control, Decision, Statistic, Threshold, absolute_value, undecidable

CLAIM = "threshold-dependence"
MATERIAL_CHANGE = 1.96 * np.sqrt(2) * 0.0020
THRESHOLD = Threshold(MATERIAL_CHANGE, "above",
                      "material change: two estimates with FZ20's standard error 0.20 % (2.54 +- 0.20 %, "
                      "IMN25 3.3) differ at the 5 % level beyond 1.96 * sqrt(2) * 0.20 = 0.55 accuracy points")
CONTROL = "the memorization scores: a second random set of each threshold's count in place of its selection"
NAME = "excess utility over random removal at the lowest minus at the highest threshold"
RANDOM, SECOND_RANDOM = "random like theta={}", "second random like theta={}"


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
