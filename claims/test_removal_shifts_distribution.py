"""removal-shifts-distribution (IMN25 4.3): removing every point above a memorization threshold
purges whole sub-populations from the training set; the accuracy drop then comes from the test
points of the purged sub-populations (a distribution shift), and removing as many low-score
points of large sub-populations also lowers accuracy.

Per case, FZ20's subsampled scores (r = 0.7); R = {i : mem(i) >= 0.25}; M models are trained on
S and on S \\ R and on the contrast arms of ``removal_experiment`` (``harness.removal``). The
decision (the drop on purged minus kept sub-populations' test points) and its negative control
are ``harness.claims.removal_shifts_distribution``. Also reported: the share of sub-populations
purged (Wilson interval), the drops on purged and kept test points, and the contrast arms: as
many of the lowest-scoring points of large sub-populations (IMN25 4.3: this also lowers
accuracy) and as many random points.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import plots, stats
from harness.claims.removal_shifts_distribution import CLAIM, MEMORIZATION_THRESHOLD, decide
from harness.experiments import Case, load_dataset
from harness.removal import (
    describe_scores,
    removal_experiment,
    selection_scores,
)
from harness.verdict import ClaimResult, Statistic
from harness.profiles import FZ20_RATE, size_bin

def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")]


def subpopulation_summary(utility):
    """Drop by sub-population size bin and purge status, weighted by test points."""
    table = utility.by_subpopulation("memorized")
    table["bin"] = size_bin(table["train_size"].to_numpy())
    table["lost"] = table["drop"] * table["test_points"]
    summary = table.groupby(["bin", "purged"]).agg(subpopulations=("group", "count"),
                                                   test_points=("test_points", "sum"),
                                                   lost=("lost", "sum"))
    summary["mean_drop"] = summary["lost"] / summary["test_points"]
    return summary.drop(columns="lost").round(4)


@pytest.mark.claim(CLAIM)
def test_accuracy_drop_comes_from_purged_subpopulations(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    models = profile.removal_models
    utility = removal_experiment(data, spec, scores, MEMORIZATION_THRESHOLD, models, store, device, seed)
    removed = utility.arm("memorized").fixed_set
    purged = utility.purged_test_points("memorized")
    groups = np.unique(data.group_train[data.group_train >= 0])
    n_purged = len(utility.purged_groups("memorized"))
    low, high = stats.wilson_interval(n_purged, len(groups))
    further = [Statistic("share of sub-populations purged", n_purged / len(groups), low, high, len(groups),
                         "sub-populations", "IMN25 4.3: removal purges entire sub-populations")]
    decision = decide(utility, seed)
    further = decision.parts + further
    if removed.any():
        further += [utility.statistic("accuracy drop, memorized points removed", utility.drop("memorized"),
                              "FZ20's marginal utility"),
                    utility.statistic("accuracy drop, low-score points of large sub-populations removed",
                              utility.drop("low-score large"), "IMN25 4.3: this also lowers accuracy (> 0)"),
                    utility.statistic("accuracy drop, random points removed", utility.drop("random"))]
    notes = [f"{describe_scores(case.rate, score_models)}; "
             f"{int(removed.sum())} points with score >= {MEMORIZATION_THRESHOLD} removed; {models} models per arm; "
             f"accuracies as fractions (0.01 = 1 point)",
             f"{int(purged.sum())} of {data.n_test} test points are in purged sub-populations"]
    if purged.any() and removed.any():
        total = utility.drop("memorized").estimate
        carried = purged.mean() * utility.drop("memorized", purged).estimate
        notes.append(f"the purged sub-populations' test points carry {carried:.4f} of the total drop "
                     f"{total:.4f}" + (f" ({carried / total:.0%})" if total > 0 else ""))
    if not case.data.startswith("synthetic"):
        notes.append("sub-populations inferred by clustering within each class")
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=further, control=decision.control,
        paper={"figure": "qualitative: the drop is due to purged sub-populations; removing low-score points of "
                         "large sub-populations would also lower accuracy", "source": "IMN25 4.3"},
        models_trained=score_models + utility.models, notes=notes,
    )
    drops = [s for s in further if s.unit == "models"]
    conclude(result,
             figures={"drops": plots.interval_bars([s.name.replace("accuracy drop", "drop") for s in drops],
                                                   [s.estimate for s in drops], [s.lower for s in drops],
                                                   [s.upper for s in drops], "test accuracy drop",
                                                   f"{case.id}: where the drop comes from")},
             tables={"arms": utility.to_dataframe().round(4),
                     "drop by sub-population size and purge": subpopulation_summary(utility)})
