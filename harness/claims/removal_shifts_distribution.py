"""removal-shifts-distribution (IMN25 4.3): removing every point above a memorization threshold
purges whole sub-populations from the training set; the accuracy drop then comes from the test
points of the purged sub-populations (a distribution shift).

R = {i : mem(i) >= 0.25} (FZ20's high-influence cut); M models are trained on S and on S \\ R
(``harness.removal``). A sub-population is purged when R holds all of its training points. Purged
sub-populations are small by construction (every member must score high), and small
sub-populations lose accuracy when R thins the training set around them whether or not they are
purged; so the drop on purged sub-populations is compared with the drop on *stand-ins*: for each
purged sub-population an unpurged one of the same size bin (singleton, small, large) with test
points (``harness.controls.stand_in_groups``). With P the test points of purged sub-populations
and Q those of the stand-ins, the decisive statistic (crossed bootstrap over model indices and
the test points by sub-population, P and Q each resampled within itself) is

    drop(R; P) - drop(R; Q) > 0,      drop(R; T) = mean acc_T(h^S) - mean acc_T(h^{S \\ R}),

the sign being the claim: the drop comes from the purge, beyond what sub-populations of the same
size lose without one. If R purges no sub-population with test points, or no unpurged one of the
same sizes has test points, the contrast does not exist and the case is undecided. Reported
beside it: the drop on purged minus all kept sub-populations' test points (IMN25's reading,
which mixes the purge with size).

Negative control: the same contrast with "purged" shuffled among the purged and stand-in
sub-populations within each size bin, so the two sides differ only by chance; a fresh shuffle in
every bootstrap replicate, so the interval holds the shuffle's own variation (with one shuffle
for the whole interval the smoke seed check found the control supported under 1 seed of 8, at
0.32 [0.15, 0.46]: with a handful of sub-populations, which ones pose as purged moves the
contrast more than resampling them does).

The study (:func:`study`): FZ20's subsampled scores at the case's rate, then the arms of
``removal_experiment``, ``removal_models`` models each: R, as many of the lowest-scoring points of
large sub-populations (IMN25 4.3: this also lowers accuracy) and as many random points. Also
reported: the share of sub-populations purged (Wilson interval).
"""

from __future__ import annotations

import numpy as np

from harness import controls, plots, stats
from harness.experiments import describe_scores, load_or_skip, selection_scores
from harness.profiles import FZ20_HIGH_INFLUENCE, size_bin
from harness.removal import removal_experiment
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, undecidable

CLAIM = "removal-shifts-distribution"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
THRESHOLD = Threshold(0.0, "above", "IMN25 4.3: the drop comes from the test points of purged "
                                    "sub-populations (the sign is the claim)")
CONTROL = "which sub-populations are purged: shuffled among the purged and their like-sized stand-ins within size bins"
NAME = "drop on purged minus like-sized kept sub-populations' test points"
PAPER = {"figure": "qualitative: the drop is due to purged sub-populations; removing low-score points of large "
                   "sub-populations would also lower accuracy", "source": "IMN25 4.3"}


def decide(utility, seed: int = 0) -> Decision:
    """From a removal experiment whose arm ``"memorized"`` removes R (its data set carries the
    sub-populations of both splits)."""
    data = utility.dataset
    removed = utility.arm("memorized").fixed_set
    purged_groups = utility.purged_groups("memorized")
    stand_ins = controls.stand_in_groups(data, purged_groups, seed) if removed.any() else np.array([], dtype=int)
    purged, standing_in = np.isin(data.group_test, purged_groups), np.isin(data.group_test, stand_ins)
    if not purged.any() or not standing_in.any():
        missing = undecidable(NAME, f"{int(purged.sum())} test points of purged sub-populations, "
                                    f"{int(standing_in.sum())} of like-sized kept ones" if removed.any() else
                                    f"no point has a score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    decisive = utility.statistic(NAME, utility.drop_contrast("memorized", purged, standing_in),
                                 f"{len(purged_groups)} purged sub-populations against {len(stand_ins)} stand-ins")
    # The contrasts read test points, so only sub-populations with some take part in the shuffle: a
    # purge flag on one without would pose nothing, and could leave a side of the contrast empty.
    both = np.concatenate([purged_groups[np.isin(purged_groups, data.group_test)], stand_ins])
    is_purged, bins = np.isin(both, purged_groups), controls.group_bins(data, both)
    shuffles = controls.rng(seed)

    def shuffled_contrast(replicate):
        # A fresh shuffle in every replicate: with a handful of sub-populations, which ones pose as
        # purged varies the contrast more than resampling them does.
        flags = controls.shuffled_within(is_purged, bins, seed=int(shuffles.integers(2**31)))
        posing = np.isin(data.group_test, both[flags])
        return {"d": utility.resampled_drop(replicate, "memorized", posing)
                - utility.resampled_drop(replicate, "memorized", (purged | standing_in) & ~posing)}

    control = utility.statistic(f"{NAME}, purge shuffled within size bins",
                                utility.bootstrap(shuffled_contrast, strata=purged | standing_in)["d"])
    parts = [utility.statistic("drop on purged minus all kept sub-populations' test points",
                               utility.drop_contrast("memorized", purged, ~purged), "IMN25's reading: purge and size "
                                                                                    "together"),
             utility.statistic("accuracy drop on purged sub-populations' test points", utility.drop("memorized", purged)),
             utility.statistic("accuracy drop on like-sized kept sub-populations' test points",
                               utility.drop("memorized", standing_in)),
             utility.statistic("accuracy drop on kept sub-populations' test points", utility.drop("memorized", ~purged))]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), parts)


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


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
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
    result = ClaimResult.from_decision(decision, statistics=further, claim=CLAIM, case=case.id, dataset=data.name,
                                       paper=PAPER, models_trained=score_models + utility.models, notes=notes)
    drops = [s for s in result.statistics if s.unit == "models"]
    figure = plots.interval_bars([s.name.replace("accuracy drop", "drop") for s in drops], [s.estimate for s in drops],
                                 [s.lower for s in drops], [s.upper for s in drops], "test accuracy drop",
                                 f"{case.id}: where the drop comes from")
    return CaseReport(result, {"drops": figure},
                      {"arms": utility.to_dataframe().round(4),
                       "drop by sub-population size and purge": subpopulation_summary(utility)})
