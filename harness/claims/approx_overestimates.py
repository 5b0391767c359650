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
5 % error" of exact LOO agrees with it). The decisive statistic is the part with the smallest
lower bound (or one whose whole interval is at or below zero, which refutes the claim); a part
whose bin has fewer than MIN_POINTS_PER_BIN points leaves the claim undecided. Intervals: crossed bootstrap over the
models of both estimates and the scored points by sub-population within their size bins
(``harness.experiments.ApproximationStudy.bootstrap``).

Negative control: the same parts with the size bins shuffled among the scored points.

A finding the papers do not report (:func:`decomposition`, ridge family): the subsampled
estimator at rate r estimates memorization for a training set of size r n, so its error against
exact LOO at size n splits in two, per size bin,

    subsampled - LOO(n) = [subsampled - LOO(r n)] + [LOO(r n) - LOO(n)],
                           estimator's own error     training-size effect

where LOO(r n) is each subsampled model's own closed-form refit without the point (paired on
the same draws, ``harness.experiments.paired_loo``). The first is the estimator's error at the
size it estimates; the second is how much more a point is memorized by a model trained on r n
points than on n, which is what "overestimation" mostly is if the first is near zero.
"""

from __future__ import annotations

import numpy as np

from harness import controls
from harness.profiles import SIZE_BINS
from harness.verdict import Control, Decision, Statistic, Threshold, intersection_union, margin_left, undecidable

CLAIM = "approx-overestimates"
MARGIN = 0.05
THRESHOLD = Threshold(0.0, "above", "IMN25 4.2: small sub-populations are overestimated, and more than "
                                    "singletons and large sub-populations (the sign is the claim), which are "
                                    "hardly affected (mean error within +-0.05, IMN25 4.2's 'within 5 % error')")
CONTROL = "size bins shuffled among the scored points"
MIN_POINTS_PER_BIN = 3
NAMES = {"small": "overestimation of small sub-populations",
         "singleton": "overestimation small minus singleton", "large": "overestimation small minus large",
         "singleton alone": "overestimation of singletons", "large alone": "overestimation of large sub-populations"}
BINS_OF = {"small": ("small",), "singleton": ("small", "singleton"), "large": ("small", "large"),
           "singleton alone": ("singleton",), "large alone": ("large",)}


def contrasts(study, seed: int = 0, bins=None) -> list[Statistic]:
    """The three contrasts of the module docstring from one crossed bootstrap (``bins``: the
    scored points' size bins, the study's own by default)."""
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
        out.append(margin_left(statistic, MARGIN) if part.endswith("alone") else statistic)
    return out


def decide(study, seed: int = 0) -> Decision:
    """From an ``ApproximationStudy`` (exact LOO and subsampled rows of the same points, their bins)."""
    parts = contrasts(study, seed)
    shuffled = contrasts(study, seed, controls.shuffled(study.table["bin"], seed))
    return Decision(intersection_union(parts, THRESHOLD), THRESHOLD,
                    Control(intersection_union(shuffled, THRESHOLD), CONTROL), parts)


def decomposition(study, seed: int = 0) -> list[Statistic]:
    """The two parts of the error per size bin (module docstring), from one crossed bootstrap; empty
    without paired LOO (families other than ridge)."""
    if study.paired is None:
        return []
    bins = study.table["bin"].to_numpy()

    def parts(replicate):
        points = replicate.points["scored"]
        subsampled = study.subsampled.rescored(replicate.models["subsampled"])
        paired = study.paired.rescored(replicate.models["subsampled"])   # the same model rows
        exact = study.loo.rescored(replicate.models["loo"])
        out = {}
        for b in SIZE_BINS:
            chosen = points[bins[points] == b]
            out[f"own {b}"] = np.nanmean(subsampled[chosen] - paired[chosen]) if len(chosen) else np.nan
            out[f"size {b}"] = np.nanmean(paired[chosen] - exact[chosen]) if len(chosen) else np.nan
        return out

    intervals = study.bootstrap(parts, seed=seed)
    out = []
    for b in SIZE_BINS:
        if (bins == b).sum() >= MIN_POINTS_PER_BIN:
            out += [Statistic.from_interval(f"estimator's own error (subsampled - exact LOO at r n, paired), {b}",
                                            intervals[f"own {b}"], models_per_arm=study.models_per_arm),
                    Statistic.from_interval(f"training-size effect (exact LOO at r n - at n), {b}",
                                            intervals[f"size {b}"], models_per_arm=study.models_per_arm)]
    return out
