"""fz-long-tail (FZ20): high-memorization points are atypical: singletons, mislabeled points or
members of rare sub-populations.

A point is *atypical* when its sub-population has at most 10 training members (singletons
included; CLAIMS.md's "small" bin ends at 10) or its label is wrong; it is *high* when its
score is at least 0.25, FZ20's threshold for memorized points. Decisive statistic:

    enrichment = share of atypical points among high points - share of atypical points overall,

with a crossed bootstrap: each replicate resamples the ensemble's models and the training
points by sub-population, recomputes every score and re-selects the high points. The claim
holds when the enrichment is above 0 (the sign of the claim).

Negative control: the same enrichment with the atypical flags shuffled among the training
points (as many atypical points, none tied to its score).
"""

from __future__ import annotations

import numpy as np

from harness import controls, stats
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.verdict import Control, Decision, Statistic, Threshold

CLAIM = "fz-long-tail"
THRESHOLD = Threshold(0.0, "above", "FZ20: high-memorization points are atypical, so atypical points make up "
                                    "more of them than of the training set (the sign of the claim)")
HIGH_SCORE = FZ20_HIGH_INFLUENCE
CONTROL = "atypical flags shuffled among the training points"
NAME = f"atypical share among points with score >= {HIGH_SCORE} minus overall"


def enrichment_interval(scores, atypical: np.ndarray, points: stats.Points, seed: int = 0):
    """The enrichment's crossed-bootstrap interval (module docstring); ``points``: the training
    points as sub-populations to resample."""
    def enrichment_of(replicate):
        drawn = replicate.points["training"]
        high = scores.rescored(replicate.models["subsampled"])[drawn] >= HIGH_SCORE
        return {"enrichment": atypical[drawn][high].mean() - atypical[drawn].mean() if high.any() else np.nan}

    return stats.crossed_bootstrap(enrichment_of, {"subsampled": scores.model_groups}, {"training": points},
                                   seed=seed)["enrichment"]


def decide(scores, atypical: np.ndarray, points: stats.Points, seed: int = 0) -> Decision:
    """From every training point's subsampled scores (with their model rows), its atypical flag and
    its sub-population."""
    atypical = np.asarray(atypical, dtype=bool)
    high = scores.score >= HIGH_SCORE
    decisive = Statistic.from_interval(NAME, enrichment_interval(scores, atypical, points, seed),
                                       note=f"{int((atypical & high).sum())} of {int(high.sum())} high points vs "
                                            f"{int(atypical.sum())} of {atypical.size} overall",
                                       models_per_arm={"subsampled models": len(scores.model_groups)})
    control = Statistic.from_interval(f"{NAME}, atypical flags shuffled",
                                      enrichment_interval(scores, controls.shuffled(atypical, seed), points, seed))
    return Decision(decisive, THRESHOLD, Control(control, CONTROL))
