"""subpopulations-stable (a check of the suite itself): the sub-populations inferred on real
images are a property of the images, not of one embedding network. Every size-bin claim on
real data (approx-overestimates, error-is-subpopulation, fz-long-tail, ...) rests on them.

On an image data set the suite infers sub-populations by Ward clustering within each class on
the last hidden layer of one small network (``harness.experiments.load_image_dataset``). The
check infers them a second time on the features of a network trained with another seed (same
images, same recipe) and compares each training point's size bin (singleton, small 2-10,
large > 10) under the two:

    decisive = Cohen's kappa(bin under embedding A, bin under embedding B) > 0.4,

0.4 being the lower edge of "moderate agreement" on Landis & Koch's (1977) scale, the usual
reading of kappa: a bin that only slightly agrees across embeddings says little about the
point. The interval is a bootstrap over the training points resampled by their sub-population
under A, within classes (``harness.stats.crossed_bootstrap``). Beside it: the adjusted Rand
index of the two clusterings (1 = identical, 0 = chance) and the share of points whose bin agrees.

Negative control: the same kappa with the bins under B shuffled among the points (as many
singletons, small and large members, none tied to its point).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from harness import controls, image_plots, plots, stats
from harness.experiments import POOL_SEED, load_or_skip, subpopulation_summary, with_other_embedding
from harness.profiles import size_bin
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Statistic, Threshold

CLAIM = "subpopulations-stable"
THRESHOLD = Threshold(0.4, "above", "Landis & Koch (1977): kappa above 0.4 is at least moderate agreement")
CONTROL = "which point has which bin under the second embedding (its bins shuffled among the points)"
NAME = "Cohen's kappa of the size bins under two embedding seeds"
PAPER = {"figure": "none: a check of the suite's inferred sub-populations, on which its size-bin claims on real "
                   "data rest", "source": "the papers take sub-populations as given (CLAIMS.md)"}


def agreement(bins_a: np.ndarray, bins_b: np.ndarray, groups_a: np.ndarray, classes: np.ndarray,
              groups_b: np.ndarray | None = None, seed: int = 0) -> dict:
    """Crossed-bootstrap intervals of kappa (and, given ``groups_b``, the adjusted Rand index and
    the share of agreeing bins) over the points resampled by sub-population within class."""
    names, codes = np.unique(np.concatenate([bins_a, bins_b]), return_inverse=True)
    code_a, code_b = codes[: len(bins_a)], codes[len(bins_a):]

    def figures(replicate):
        points = replicate.points["training"]
        out = {"kappa": stats.cohen_kappa(code_a[points], code_b[points], len(names))}
        if groups_b is not None:
            out["ari"] = adjusted_rand_score(groups_a[points], groups_b[points])
            out["agree"] = float(np.mean(code_a[points] == code_b[points]))
        return out

    return stats.crossed_bootstrap(figures, points={"training": stats.Points(groups_a, classes)}, seed=seed,
                                   components=groups_b is not None)


def decide(bins_a: np.ndarray, bins_b: np.ndarray, groups_a: np.ndarray, groups_b: np.ndarray,
           classes: np.ndarray, seed: int = 0) -> Decision:
    """From each training point's size bin and sub-population under two embeddings, and its class."""
    bins_a, bins_b = np.asarray(bins_a).astype(str), np.asarray(bins_b).astype(str)
    intervals = agreement(bins_a, bins_b, groups_a, classes, groups_b, seed)
    # One embedding network a side: the points are the only resampled level, so the power
    # statement asks for more points (a larger image subset), never more models.
    decisive = Statistic.from_interval(NAME, intervals["kappa"], unit="training points",
                                       note="bootstrap over sub-populations within classes",
                                       models_per_arm={"embedding networks": 1})
    shuffled = agreement(bins_a, controls.shuffled(bins_b, seed), groups_a, classes, seed=seed)["kappa"]
    control = Statistic.from_interval(f"{NAME}, second embedding's bins shuffled", shuffled, unit="training points")
    parts = [Statistic.from_interval("adjusted Rand index of the two clusterings", intervals["ari"],
                                     unit="training points", note="1 = identical, 0 = chance"),
             Statistic.from_interval("share of points whose size bin agrees", intervals["agree"],
                                     unit="training points")]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), parts)


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    """The suite's sub-populations of ``case.data`` against those of a second embedding network
    (seed ``POOL_SEED + 1 + seed``); nothing is trained beyond the two embedding networks."""
    first = load_or_skip(case.data, profile.name)
    other_seed = POOL_SEED + 1 + seed
    second = with_other_embedding(case.data, profile.name, other_seed)
    bins = size_bin(first.group_size_train), size_bin(second.group_size_train)
    classes = first.y_train.numpy()
    decision = decide(*bins, first.group_train, second.group_train, classes, seed)
    result = ClaimResult.from_decision(
        decision, claim=CLAIM, case=case.id, dataset=first.name, paper=PAPER, models_trained=2,
        notes=[f"embedding A (the suite's): {first.meta.get('embedding', '')}; {subpopulation_summary(first)}",
               f"embedding B: seed {other_seed}; {subpopulation_summary(second)}",
               "models trained: the two embedding networks (cached beside the store)"])
    sizes = {f"embedding seed {s}": np.unique(d.group_train, return_counts=True)[1]
             for s, d in ((POOL_SEED, first), (other_seed, second))}
    figures = {"sub-population sizes": plots.subpopulation_sizes(sizes, f"{first.name}: inferred sub-population sizes"),
               "sub-populations": image_plots.subpopulation_grid(first, seed=seed)}
    crossed = pd.crosstab(pd.Series(bins[0], name=f"bin, seed {POOL_SEED}"),
                          pd.Series(bins[1], name=f"bin, seed {other_seed}"))
    return CaseReport(result, figures, {"size bins under the two embeddings (training points)": crossed})
