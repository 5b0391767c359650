"""subpopulations-stable (a check of the suite itself): the sub-populations inferred on real
images are a property of the images, not of one embedding network. Every size-bin claim on
real data (approx-overestimates, error-is-subpopulation, fz-long-tail, ...) rests on them.

On an image data set the suite infers sub-populations by Ward clustering within each class on
the last hidden layer of one small network (``harness.experiments.load_image_dataset``). The
check infers them again on the features of m networks trained with other seeds (same images,
same recipe; m = ``profile.embedding_networks_compared``) and compares each training point's
size bin (singleton, small 2-10, large > 10) under the suite's embedding A and each other B_j:

    decisive = mean_j Cohen's kappa(bin under A, bin under B_j) > 0.4,

0.4 being the lower edge of "moderate agreement" on Landis & Koch's (1977) scale, the usual
reading of kappa: a bin that only slightly agrees across embeddings says little about the
point. Two sources of noise are in the interval (``harness.stats.mean_over_fits``): the points
(a bootstrap over the training points resampled by their sub-population under A, within
classes, every kappa_j recomputed on the resample) and the embedding networks (the spread of
kappa_j over m, t on Welch-Satterthwaite's degrees of freedom): one second network alone moves
kappa by as much as the points do. ``--seed`` draws another m networks. Beside it: the share of
points whose bin agrees (the same interval) and the adjusted Rand index of the clusterings (1 =
identical, 0 = chance), whose interval is over the networks only, the points held fixed: a
bootstrap over points would count a duplicated point's pairs as agreeing.

Negative control: the same mean kappa with each B_j's bins shuffled among the points (as many
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
CONTROL = "which point has which bin under each other embedding (its bins shuffled among the points)"
NAME = "Cohen's kappa of the size bins, the suite's embedding against other seeds' (mean)"
PAPER = {"figure": "none: a check of the suite's inferred sub-populations, on which its size-bin claims on real "
                   "data rest", "source": "the papers take sub-populations as given (CLAIMS.md)"}


def _codes(bins_a: np.ndarray, bins_b: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    names, codes = np.unique(np.concatenate([bins_a, *bins_b]), return_inverse=True)
    return codes[: len(bins_a)], codes[len(bins_a):].reshape(len(bins_b), len(bins_a)), len(names)


def kappa_per_embedding(bins_a: np.ndarray, bins_b: list[np.ndarray]) -> list[float]:
    """Cohen's kappa of A's size bins with each other embedding's, over every training point."""
    code_a, codes_b, categories = _codes(np.asarray(bins_a).astype(str), [np.asarray(b).astype(str) for b in bins_b])
    return [stats.cohen_kappa(code_a, code_b, categories) for code_b in codes_b]


def agreement(bins_a: np.ndarray, bins_b: list[np.ndarray], groups_a: np.ndarray, classes: np.ndarray,
              groups_b: list[np.ndarray] | None = None, seed: int = 0) -> dict[str, stats.CrossedInterval]:
    """Mean kappa (and the share of agreeing bins; given ``groups_b``, the adjusted Rand index)
    of A's bins against each of the other embeddings' ``bins_b``, with intervals over the points
    (resampled by sub-population within class) and the embeddings (module docstring)."""
    code_a, codes_b, categories = _codes(bins_a, bins_b)

    def per_embedding(points):
        return {"kappa": [stats.cohen_kappa(code_a[points], code_b[points], categories) for code_b in codes_b],
                "agree": [float(np.mean(code_a[points] == code_b[points])) for code_b in codes_b]}

    def means(replicate):
        return {name: float(np.mean(values)) for name, values in per_embedding(replicate.points["training"]).items()}

    training = stats.Points(groups_a, classes)
    over_points = stats.crossed_bootstrap(means, points={"training": training}, seed=seed, components=False)
    bounds = {"kappa": (-1.0, 1.0), "agree": (0.0, 1.0)}
    out = {name: stats.mean_over_fits(values, over_points[name].var_both, training.n, fits="embedding networks",
                                      bounds=bounds[name])
           for name, values in per_embedding(np.arange(len(bins_a))).items()}
    if groups_b is not None:
        out["ari"] = stats.mean_over_fits([adjusted_rand_score(groups_a, other) for other in groups_b], 0.0,
                                          training.n, fits="embedding networks", bounds=(-1.0, 1.0))
    return out


def decide(bins_a: np.ndarray, bins_b: list[np.ndarray], groups_a: np.ndarray, groups_b: list[np.ndarray],
           classes: np.ndarray, seed: int = 0) -> Decision:
    """From each training point's size bin and sub-population under the suite's embedding and
    under each of the others (lists, one array per embedding network), and its class."""
    if len(bins_b) != len(groups_b) or len(bins_b) < 2:
        raise ValueError(f"need the bins and groups of at least 2 other embeddings, got {len(bins_b)} and "
                         f"{len(groups_b)}")
    bins_a, bins_b = np.asarray(bins_a).astype(str), [np.asarray(b).astype(str) for b in bins_b]
    intervals = agreement(bins_a, bins_b, groups_a, classes, groups_b, seed)
    networks = {"embedding networks": len(bins_b)}
    decisive = Statistic.from_interval(NAME, intervals["kappa"], unit="training points",
                                       note="over the points (by sub-population within class) and the embedding "
                                            "networks", models_per_arm=networks)
    shuffled_bins = [controls.shuffled(bins, seed + j) for j, bins in enumerate(bins_b)]
    shuffled = agreement(bins_a, shuffled_bins, groups_a, classes, seed=seed)["kappa"]
    control = Statistic.from_interval(f"{NAME}, other embeddings' bins shuffled", shuffled, unit="training points")
    parts = [Statistic.from_interval("adjusted Rand index of the clusterings", intervals["ari"],
                                     unit="training points",
                                     note="1 = identical, 0 = chance; interval over the embedding networks only"),
             Statistic.from_interval("share of points whose size bin agrees", intervals["agree"],
                                     unit="training points")]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), parts)


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    """The suite's sub-populations of ``case.data`` against those of
    ``profile.embedding_networks_compared`` other embedding networks (seeds after ``POOL_SEED``,
    another block of them for each ``seed``); nothing is trained beyond the embedding networks."""
    first = load_or_skip(case.data, profile.name)
    count = profile.embedding_networks_compared
    other_seeds = [POOL_SEED + 1 + seed * count + j for j in range(count)]
    others = [with_other_embedding(case.data, profile.name, other) for other in other_seeds]
    bins_a, bins_b = size_bin(first.group_size_train), [size_bin(other.group_size_train) for other in others]
    classes = first.y_train.numpy()
    decision = decide(bins_a, bins_b, first.group_train, [other.group_train for other in others], classes, seed)
    result = ClaimResult.from_decision(
        decision, claim=CLAIM, case=case.id, dataset=first.name, paper=PAPER, models_trained=1 + count,
        notes=[f"embedding A (the suite's): {first.meta.get('embedding', '')}; {subpopulation_summary(first)}",
               f"other embeddings: seeds {other_seeds[0]} to {other_seeds[-1]}; the first: "
               f"{subpopulation_summary(others[0])}",
               f"models trained: the {1 + count} embedding networks (cached beside the store)"])
    sizes = {f"embedding seed {s}": np.unique(d.group_train, return_counts=True)[1]
             for s, d in ((POOL_SEED, first), (other_seeds[0], others[0]))}
    kappas = kappa_per_embedding(bins_a, bins_b)
    mean = decision.decisive
    figures = {
        "kappa per embedding network": plots.interval_bars(
            [f"seed {s}" for s in other_seeds] + ["mean"], kappas + [mean.estimate], kappas + [mean.lower],
            kappas + [mean.upper], "Cohen's kappa of the size bins",
            f"{first.name}: size bins under seed {POOL_SEED} against each other embedding "
            f"(dashed: {THRESHOLD.value})", reference=THRESHOLD.value),
        "sub-population sizes": plots.subpopulation_sizes(sizes, f"{first.name}: inferred sub-population sizes"),
        "sub-populations": image_plots.subpopulation_grid(first, seed=seed)}
    crossed = pd.crosstab(pd.Series(bins_a, name=f"bin, seed {POOL_SEED}"),
                          pd.Series(bins_b[0], name=f"bin, seed {other_seeds[0]}"))
    table = pd.DataFrame({"embedding seed": other_seeds, "kappa": kappas})
    return CaseReport(result, figures, {"kappa per embedding network": table,
                                        "size bins under the suite's and the first other embedding "
                                        "(training points)": crossed})
