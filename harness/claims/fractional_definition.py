"""fractional-definition (IMN26): the fractional memorization score, thresholded by a null
distribution of randomly relabelled points, has fewer false positives than the original.

The truth is known: singletons and mislabeled points are memorized (positives); correctly
labelled members of sub-populations of two or more are not (negatives). Both scores come from
one subsampled ensemble (r = 0.7, FZ20's estimator):

    original   = P_in - P_out                       (FZ20)
    fractional = (P_in - P_out) / (P_in + P_out)    (IMN26)

Each is scored by its false-positive rate at 95 % true-positive rate (the operating point
IMN26 reports); the claim holds when

    FPR(original) - FPR(fractional) > 0

with a crossed bootstrap that keeps the pairing: each replicate resamples the ensemble's models
and the real points by sub-population (positives and negatives each within themselves),
recomputes both scores, re-chooses each score's 95 % TPR threshold and takes the difference of
the two FPRs on the same resampled negatives.

Negative control: the same difference with the truth shuffled among the real points, so
neither score can find the memorized ones.
"""

from __future__ import annotations

import numpy as np

from harness import controls, estimators, stats
from harness.verdict import Control, Decision, Statistic, Threshold

CLAIM = "fractional-definition"
THRESHOLD = Threshold(0.0, "above", "IMN26: the fractional definition has fewer false positives, so the "
                                    "original's FPR at 95 % TPR minus the fractional one's is positive (the "
                                    "sign of the claim)")
TARGET_TPR = 0.95
CONTROL = "which points are memorized (the truth) shuffled among the real points"
NAME = f"FPR at {TARGET_TPR:.0%} TPR, original minus fractional"


def fpr_difference(scores, real: np.ndarray, truth: np.ndarray, clusters: np.ndarray, seed: int = 0):
    """The decisive difference's crossed-bootstrap interval (module docstring)."""
    both = {"original": scores, "fractional": estimators.fractional(scores)}

    def difference(replicate):
        rescored = {name: s.rescored(replicate.models["subsampled"])[real] for name, s in both.items()}
        points = replicate.points["real"]
        points = points[np.isfinite(rescored["original"][points])]
        fpr = {name: stats.fpr_at_tpr(values[points], truth[points], TARGET_TPR).fpr.estimate
               for name, values in rescored.items()}
        return {"difference": fpr["original"] - fpr["fractional"]}

    return stats.crossed_bootstrap(difference, {"subsampled": scores.model_groups},
                                   {"real": stats.Points(clusters, truth)}, seed=seed)["difference"]


def decide(scores, real: np.ndarray, truth: np.ndarray, clusters: np.ndarray, seed: int = 0) -> Decision:
    """From one subsampled ensemble's scores (with their model rows; ``real``: the positions of the
    real points among the scored ones, the rest being null points), the truth of every real point
    and its sub-population (``clusters``)."""
    truth = np.asarray(truth, dtype=bool)
    decisive = Statistic.from_interval(NAME, fpr_difference(scores, real, truth, clusters, seed),
                                       models_per_arm={"subsampled models": len(scores.model_groups)})
    control = Statistic.from_interval(f"{NAME}, truth shuffled",
                                      fpr_difference(scores, real, controls.shuffled(truth, seed), clusters, seed))
    return Decision(decisive, THRESHOLD, Control(control, CONTROL))
