"""leakage (IMN26): near-duplicates shared by the training and test splits inflate the measured
marginal utility of memorized points; on a leakage-free test set it shrinks.

Per case, FZ20's procedure: subsampled scores (r = 0.7) of the training points, R = {i : mem(i)
>= 0.25}, M models on S and on S \\ R (``harness.removal``), evaluated on a test split with
near-duplicates D of training points and on its clean part C (``harness.leakage``):

- synthetic: a near-duplicate of every correctly labelled training point is planted (noise of a
  tenth of the median nearest-neighbour distance). The leaked test split is the clean one with a
  share s of its points replaced by near-duplicates of training points *of their own
  sub-population*: the copies are weighted to the clean split's sub-population mix
  (``copy_weights_matching_clean_mix``), so leaked and clean differ only in being copies, not in
  which sub-populations they come from, and no particular draw of sources decides the case.
  s = 10 %, the share of CIFAR-100 test images with a near-duplicate in the training split
  (Barz & Denzler 2020, "Do we train on test data?").
- digits (no planting): D = the test images closer to a training image than 19 in 20 training
  images are to their nearest neighbour (``detect_near_duplicates``, quantile 0.05), s = |D| / n_test.

In both cases, with drop(R; D) weighted as above for planted copies,

    inflation = utility(leaked) - utility(clean) = s * (drop(R; D) - drop(R; C)) > 0,

with a crossed bootstrap over model indices (the same models are scored on both test sets) and
the test points by sub-population, leaked and clean points each within themselves; the
sign is the claim. Matching the clean mix is the neutral leak model: the claim is about leakage,
not about which sub-populations it falls in (this generator's test split over-represents the tail,
so copies of uniformly drawn training points would lean on large sub-populations and shrink the
utility for that reason alone). Also reported: both utilities, the drops on duplicates of removed
and of kept training points (the mechanism: a removed memorized point takes its duplicate with
it), and the inflation if every duplicate were of a removed point (leakage concentrated on
memorized points, as in FZ20's high-influence pairs; it holds by construction whenever removed
points' duplicates lose more than fresh test points, so it is reported, not decisive).

Negative control (``harness.controls``): the same inflation with no leak, the clean test points
of a random half of the sub-populations posing as the leaked ones against the rest.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import plots
from harness.claims.leakage import CLAIM, MEMORIZATION_THRESHOLD, decide
from harness.experiments import Case, load_dataset
from harness.leakage import copy_weights_matching_clean_mix, detect_near_duplicates, plant_near_duplicates
from harness.removal import (
    describe_scores,
    marginal_utility,
    select_above,
    selection_scores,
)
from harness.verdict import ClaimResult
from harness.profiles import FZ20_RATE

CIFAR100_LEAK_SHARE = 0.10  # Barz & Denzler 2020: about 10 % of CIFAR-100 test images have a training near-duplicate
DETECTION_QUANTILE = 0.05


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")]


def leaked_split(data):
    """The split, weights over its near-duplicates, the leak share s, and how the duplicates came about."""
    if data.name.startswith("synthetic"):
        clean_sources = np.flatnonzero(~data.mislabeled_train) if data.mislabeled_train is not None \
            else np.arange(data.n_train)
        split = plant_near_duplicates(data, clean_sources)
        return split, copy_weights_matching_clean_mix(split), CIFAR100_LEAK_SHARE, \
            f"planted: a copy of each of {len(clean_sources)} correctly labelled training points, weighted to " \
            f"the clean sub-population mix and a leak share of {CIFAR100_LEAK_SHARE:.0%} (CIFAR-100's, " \
            f"Barz & Denzler 2020)"
    split = detect_near_duplicates(data, DETECTION_QUANTILE)
    return split, split.leaked, split.leak_share, \
        f"detected: {int(split.leaked.sum())} of {data.n_test} test images ({split.leak_share:.1%}) are closer " \
        f"to a training image than the {DETECTION_QUANTILE} quantile of training nearest-neighbour distances"


@pytest.mark.claim(CLAIM)
def test_near_duplicates_inflate_marginal_utility(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    # Scores depend on the training split only, which planting leaves unchanged.
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    removed = select_above(scores, MEMORIZATION_THRESHOLD)
    split, duplicate_weights, share, how = leaked_split(data)
    models = profile.removal_models
    notes = [f"{describe_scores(case.rate, score_models)}; "
             f"{int(removed.sum())} points with score >= {MEMORIZATION_THRESHOLD} removed; {models} models per arm; "
             "accuracies as fractions (0.01 = 1 point)", how]
    utility = None
    if removed.any() and split.leaked.any():
        utility = marginal_utility(split.dataset, spec, {"memorized": removed}, models, store, device, seed)
    decision = decide(utility, split.leaked, duplicate_weights, share, seed)
    further = list(decision.parts)
    if utility is not None:
        leaked = split.leaked
        source_removed = np.zeros(split.dataset.n_test, dtype=bool)
        source_removed[leaked] = removed[split.source[leaked]]
        for label, points in (("removed", leaked & source_removed), ("kept", leaked & ~source_removed)):
            if points.any():
                further.append(utility.statistic(f"accuracy drop on near-duplicates of {label} training points",
                                                 utility.drop("memorized", points), f"{int(points.sum())} test points"))
        if (leaked & source_removed).any():
            concentrated = utility.bootstrap(lambda r: {"c": share * (
                utility.resampled_drop(r, "memorized", leaked & source_removed)
                - utility.resampled_drop(r, "memorized", ~leaked))}, strata=leaked)["c"]
            further.append(utility.statistic(
                "inflation if every near-duplicate were of a removed point", concentrated,
                "s * (drop on duplicates of removed points - drop on clean): leakage concentrated on "
                "memorized points, as in FZ20's high-influence pairs; an upper-end scenario, not the decisive one"))
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=further, control=decision.control,
        paper={"figure": "qualitative: leakage-free test sets (CIFAR without duplicates, ImageNet-V2) shrink "
                         "the marginal utility", "source": "IMN26 (reviews)"},
        models_trained=score_models + (utility.models if utility is not None else 0), notes=notes,
    )
    figures = {}
    if utility is not None:
        bars = [decision.decisive] + further
        figures = {"utilities": plots.interval_bars(
            [s.name.split(":")[0].replace("accuracy drop on ", "drop: ") for s in bars],
            [s.estimate for s in bars], [s.lower for s in bars], [s.upper for s in bars],
            "test accuracy drop", f"{case.id}: leakage")}
    conclude(result, figures=figures)
