"""The suite measures its own coverage: each interval type that decides a verdict, by simulation.

    python -m harness.calibration [--quick] [--json] [--replicates N] [--workers W]

Each replicate draws a fresh synthetic data set (generator seed i) and fresh models (training
seed i), trains the ridge family through the one training path (``harness.ensemble``, in a
throw-away store), computes every interval as the claims compute it, and records whether it
holds the truth (``../shared/STATISTICS.md``, "Checking intervals"):

- **approximation error, small** and **small minus large** (approx-overestimates' contrasts):
  mean over small sub-populations' points of subsampled (r = 0.7) minus exact closed-form LOO,
  and that minus the same over large sub-populations; crossed bootstrap
  (``ApproximationStudy.bootstrap``). Truth: the mean of the statistic over ``truth_draws``
  further data draws, each with ``truth_factor`` times the models (so the truth holds the
  population of sub-populations the generator draws from, not one data set).
- **removal drop** (the removal claims): accuracy of M models on S minus M on S without its
  singletons; crossed bootstrap over the model index and the test points by sub-population.
  Truth as above.
- **per-point Newcombe** (every per-point memorization interval): one random point's exact LOO
  score; truth: the same point's score from ``truth_factor`` times the draws on the same data.
- **fractional box** (fractional-definition's per-point interval): the same for one random
  point's fractional subsampled score.
- **correlation** (mem-gen-anticorrelated): Pearson r of mean memorization and test accuracy
  over ``configurations`` ridge configurations drawn at random (features, ridge strength), the
  Fisher interval widened by the models' variance. Truth: r over ``truth_configurations``
  configurations, each with ``truth_factor`` times the models.
- **high-point enrichment** (fz-long-tail, a bootstrap that re-selects inside each replicate):
  share of atypical points (sub-populations of at most 10) among points whose subsampled score
  is >= 0.25, minus their share overall; crossed bootstrap over the subsampled models and the
  training points by sub-population, the high points re-selected in each replicate
  (``harness.claims.fz_long_tail.enrichment_interval``). The statistic selects on noisy scores,
  so its expectation moves with the number of models: its truth is the mean over further draws
  with the replicate's own number of models. **high-point enrichment against 8x the models**
  holds the same interval against the mean with ``truth_factor`` times the models, a bias check
  (``BIAS_CHECKS``): how far what k models measure lies from what a much larger ensemble would.
- **error ends, small** and **error ends, singleton** (error-is-subpopulation, which also
  re-selects): among the points scoring >= 0.25, the share of small-sub-population members among
  the k highest-error points minus among the k lowest, and the singletons' share the other way
  round (``harness.claims.error_is_subpopulation.end_contrasts``). Truth at the replicate's
  number of models, with the bias check against 8x the models beside each, as for the enrichment.
  A replicate with too few influential points for both ends gives no interval and counts as a miss.
- **partial correlation** (mem-gen-anticorrelated's second part): partial r of the share of
  points scoring >= 0.25 and test accuracy given mean memorization, over the same
  configurations, the jackknife alone (t on n - 2 degrees of freedom).
  Truth: the same partial r over the truth configurations. The share counts points above a cut
  of noisy scores, so its expectation moves with the number of models; the truth's larger
  ensembles measure whether the interval still holds the figure a much larger ensemble gives.
- **FPR difference at 95 % TPR** (fractional-definition's decisive statistic, which re-selects
  its operating threshold in each replicate): on a draw with planted label noise (the generator's
  ``label_noise`` at ``LABEL_NOISE``, as ``synthetic-noisy``) and its relabelled null points
  appended, one subsampled ensemble (r = 0.7) scores every point; the false-positive rate at 95 %
  true-positive rate of the original score minus that of the fractional score, positives the
  singletons and mislabeled points, negatives the correctly labelled members of
  sub-populations of 2 or more (``harness.claims.fractional_definition``: ``counted_points``,
  ``fpr_difference``, ``rate_difference``). This row runs at the claim's own default shape
  (``FRACTIONAL_SHAPE``: its synthetic generator, ridge width and subsampled models; about 65
  positives), not the small design above: how the statistic behaves depends on the number of
  positives, and with the small design's 16 the threshold is the lowest positive's score, which
  the claim no longer decides on (``MIN_POSITIVES``). The truth is the statistic on one large
  draw, the ``fractional_truth_draws`` truth draws' points pooled (``../shared/STATISTICS.md``),
  since a rate read at a quantile is not the mean of its small-sample values. The row also
  counts **false decisions**: replicates whose interval, compared to the claim's threshold by
  ``harness.verdict.decide``, refutes the claim while the truth lies on the claim's side of it,
  or supports it while the truth does not (one-sided, at most 2.5 % for an interval that covers).

Each coverage comes with its Wilson interval over the replicates (200 resolve about +-0.03
at 0.95); the types that carry a threshold (``THRESHOLDS``) also give their false decisions.
The target: every type covers at least 0.93 at nominal 0.95 and none above 0.995 (the bias
checks are reported, not held to it).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness import estimators, stats
from harness.claims import error_is_subpopulation, fractional_definition, fz_long_tail
from harness.data import SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.experiments import (LABEL_NOISE, ApproximationStudy, configuration_figures,
                                 correlation_across_configurations, training_points)
from harness.masks import full_plan, subsampled_plan
from harness.profiles import DEFAULT, FZ20_HIGH_INFLUENCE, FZ20_RATE, SIZE_BINS, size_bin
from harness.removal import marginal_utility
from harness.store import Store
from harness.train import RidgeSpec
from harness.verdict import REFUTED, SUPPORTED, Statistic, decide

NOMINAL = 0.95
TARGET = (0.93, 0.995)
TYPES = ("approximation error, small", "approximation error, small minus large", "removal drop",
         "per-point Newcombe", "fractional box", "correlation", "partial correlation", "high-point enrichment",
         "high-point enrichment against 8x the models", "error ends, small", "error ends, singleton",
         "error ends, small, against 8x the models", "error ends, singleton, against 8x the models",
         "FPR difference at 95 % TPR")
# Rows whose truth is not the interval's target but a larger ensemble's value: they measure how far
# a statistic moves with the number of models (a bias), reported beside the coverage, not held to TARGET.
BIAS_CHECKS = ("high-point enrichment against 8x the models", "error ends, small, against 8x the models",
               "error ends, singleton, against 8x the models")
# error-is-subpopulation's two contrasts, by the key ``end_contrasts`` gives each.
ERROR_ENDS = {"small": (TYPES[9], TYPES[11]), "singleton": (TYPES[10], TYPES[12])}
# fractional-definition's difference, at the claim's default shape.
FRACTIONAL = (TYPES[13],)
FRACTIONAL_SHAPE = DEFAULT
# Types whose verdict the calibration also checks: the claim's threshold, against which a false
# decision (refuted with the truth on the claim's side, or supported with it off) is counted.
THRESHOLDS = {name: fractional_definition.THRESHOLD for name in FRACTIONAL}
# The partial correlation mem-gen-anticorrelated decides its second part on (x given g, with test accuracy).
PARTIAL = ("share memorized", "mean memorization")


@dataclass(frozen=True)
class Design:
    """Sizes of one calibration run; every replicate and every truth draw uses them."""

    synthetic: SubpopulationSpec
    ridge: RidgeSpec
    replicates: int
    loo_draws: int
    subsampled_models: int
    removal_models: int
    configurations: int
    truth_factor: int
    truth_draws: int
    truth_configurations: int
    fractional_truth_draws: int
    n_boot: int


QUICK = Design(
    synthetic=SubpopulationSpec(num_classes=3, dim=12, subpops_per_class=5, largest=16, singletons_per_class=3,
                                separation=1.2, spread=0.5),
    ridge=RidgeSpec(features=64, models_per_pass=40),
    replicates=200, loo_draws=20, subsampled_models=40, removal_models=12, configurations=6, truth_factor=8,
    truth_draws=24, truth_configurations=60, fractional_truth_draws=60, n_boot=300,
)
FULL = replace(QUICK, ridge=RidgeSpec(features=128, models_per_pass=40), replicates=400, loo_draws=40,
               subsampled_models=100, removal_models=16, truth_draws=60, truth_configurations=120,
               fractional_truth_draws=200, n_boot=1000)


def _data(design: Design, seed: int):
    return synthetic(replace(design.synthetic, seed=seed))


def _approximation(design: Design, data, models_factor: int, store: Store, seed: int) -> ApproximationStudy:
    loo_ensemble = train_ensemble(data, design.ridge, full_plan(data.n_train, design.loo_draws * models_factor),
                                  store, seed, progress=False)
    loo = estimators.closed_form_loo(loo_ensemble.masks, loo_ensemble.arrays["train_margin"],
                                     loo_ensemble.arrays["loo_margin"])
    plan = subsampled_plan(data.n_train, design.subsampled_models * models_factor, FZ20_RATE, seed)
    sub_ensemble = train_ensemble(data, replace(design.ridge, closed_form_loo=False), plan, store, seed,
                                  progress=False)
    sub = estimators.subsampled(sub_ensemble.masks, sub_ensemble.arrays["train_margin"])
    bins = size_bin(data.group_size_train)
    table = pd.DataFrame({"error": sub.score - loo.score, "bin": bins})
    return ApproximationStudy(loo, sub, table, loo_ensemble.n_models + sub_ensemble.n_models,
                              training_points(data, loo.points, bins))


def _error_contrasts(study: ApproximationStudy, seed: int, n_boot: int) -> dict:
    bins = study.table["bin"].to_numpy()

    def contrasts(replicate):
        points = replicate.points["scored"]
        error, bin_of = study.errors(replicate)[points], bins[points]
        small, large = np.nanmean(error[bin_of == "small"]), np.nanmean(error[bin_of == "large"])
        return {TYPES[0]: small, TYPES[1]: small - large}

    return study.bootstrap(contrasts, n_boot=n_boot, seed=seed)


def _atypical(data) -> np.ndarray:
    """fz-long-tail's atypical points on the generator's data (no label noise): sub-populations of
    at most the small bin's size."""
    return data.group_size_train <= SIZE_BINS["small"][1]


def _enrichment(scores, atypical: np.ndarray) -> float:
    high = scores.score >= FZ20_HIGH_INFLUENCE
    return float(atypical[high].mean() - atypical.mean()) if high.any() else math.nan


def _error_end(study: ApproximationStudy, key: str, seed: int) -> float:
    """error-is-subpopulation's contrast ``key`` on one study (NaN where too few points are
    influential); only the estimate is read, so the fewest resamples."""
    return error_is_subpopulation.end_contrasts(study, seed, n_boot=100)[key].estimate


def _fractional(design: Design, seed: int, store: Store):
    """fractional-definition's scores on draw ``seed`` of the claim's default shape with planted
    label noise and its relabelled null (the claim's own construction), and the points the rates count."""
    shape = FRACTIONAL_SHAPE
    base = synthetic(replace(shape.synthetic, label_noise=LABEL_NOISE, seed=seed))
    counted = fractional_definition.counted_points(base, f"synthetic draw {seed} with label noise {LABEL_NOISE}")
    plan = subsampled_plan(counted.null.dataset.n_train, shape.subsampled_models, FZ20_RATE, seed)
    spec = replace(design.ridge, features=shape.ridge.features, closed_form_loo=False)
    ensemble = train_ensemble(counted.null.dataset, spec, plan, store, seed, progress=False)
    return estimators.subsampled(ensemble.masks, ensemble.arrays["train_margin"]), counted


def _fpr_difference_pooled(design: Design, store: Store) -> float:
    """The FPR difference on one large draw: the truth draws' counted points pooled."""
    original, fractional, memorized = [], [], []
    for j in range(design.fractional_truth_draws):
        scores, counted = _fractional(design, 10**6 + j, store)
        original.append(scores.score[counted.real])
        fractional.append(estimators.fractional(scores).score[counted.real])
        memorized.append(counted.memorized)
    return fractional_definition.rate_difference(*map(np.concatenate, (original, fractional, memorized)))


def _removal(design: Design, data, models_factor: int, store: Store, seed: int):
    return marginal_utility(data, design.ridge, {"singletons": data.group_size_train == 1},
                            design.removal_models * models_factor, store, seed=seed, progress=False)


def _configuration(rng: np.random.Generator, design: Design) -> RidgeSpec:
    return replace(design.ridge, features=int(rng.choice([16, 32, 64, 128, 256])),
                   ridge=float(10 ** rng.uniform(-3, 0)), closed_form_loo=False)


def _memorization_and_accuracy(design: Design, data, spec, models: int, store: Store, seed: int):
    plan = subsampled_plan(data.n_train, models, FZ20_RATE, seed)
    ensemble = train_ensemble(data, spec, plan, store, seed, progress=False)
    return estimators.subsampled(ensemble.masks, ensemble.arrays["train_margin"]), ensemble.test_accuracy()


def _correlations(design: Design, store: Store, seed: int) -> dict[str, stats.CrossedInterval]:
    """Both correlation types from one set of configurations, drawn as the truth draws them: each
    its own ridge settings and data draw."""
    rng = np.random.default_rng([seed, 1])
    measured = [_memorization_and_accuracy(design, _data(design, 3 * 10**6 + seed * design.configurations + j),
                                           _configuration(rng, design), design.subsampled_models, store, seed)
                for j in range(design.configurations)]
    n_boot = max(100, design.n_boot // 2)
    return {TYPES[5]: correlation_across_configurations(measured, seed, n_boot=n_boot),
            TYPES[6]: correlation_across_configurations(measured, seed, n_boot=n_boot, x=PARTIAL[0],
                                                        given=PARTIAL[1])}


def population_truth(design: Design, store: Store) -> dict[str, float]:
    """The population-level targets: means over fresh large draws, and the correlation over many
    configurations with large ensembles (module docstring)."""
    contrasts, drops, enrichments, enrichments_at_8k = [], [], [], []
    ends = {name: [] for names in ERROR_ENDS.values() for name in names}
    for j in range(design.truth_draws):
        seed = 10**6 + j
        data = _data(design, seed)
        study = _approximation(design, data, design.truth_factor, store, seed)
        bins = study.table["bin"].to_numpy()
        error = study.table["error"].to_numpy()
        contrasts.append((error[bins == "small"].mean(), error[bins == "small"].mean() - error[bins == "large"].mean()))
        enrichments_at_8k.append(_enrichment(study.subsampled, _atypical(data)))
        at_k = _approximation(design, data, 1, store, seed)
        enrichments.append(_enrichment(at_k.subsampled, _atypical(data)))
        for key, (name, name_at_8k) in ERROR_ENDS.items():
            ends[name].append(_error_end(at_k, key, seed))
            ends[name_at_8k].append(_error_end(study, key, seed))
        removal = _removal(design, data, design.truth_factor, store, seed)
        drops.append(float(removal.per_model_drop("singletons").mean()))
    rng = np.random.default_rng(10**6)
    measured = [_memorization_and_accuracy(design, _data(design, 2 * 10**6 + j), _configuration(rng, design),
                                           design.subsampled_models * design.truth_factor, store, j)
                for j in range(design.truth_configurations)]
    figures = configuration_figures(measured)
    contrasts = np.array(contrasts)
    return {TYPES[0]: float(contrasts[:, 0].mean()), TYPES[1]: float(contrasts[:, 1].mean()),
            TYPES[2]: float(np.mean(drops)),
            TYPES[5]: float(stats.row_correlation(figures["mean memorization"][None], figures["test accuracy"][None])[0]),
            TYPES[6]: float(stats.row_correlation(figures[PARTIAL[0]][None], figures["test accuracy"][None],
                                                  figures[PARTIAL[1]][None])[0]),
            TYPES[7]: float(np.nanmean(enrichments)), TYPES[8]: float(np.nanmean(enrichments_at_8k)),
            **{name: float(np.nanmean(values)) for name, values in ends.items()},
            FRACTIONAL[0]: _fpr_difference_pooled(design, store)}


def replicate(design: Design, index: int, truth: dict, store: Store) -> dict[str, bool]:
    """Whether each interval type holds its truth in replicate ``index`` (module docstring)."""
    data = _data(design, index)
    covered = {}
    study = _approximation(design, data, 1, store, index)
    for name, interval in _error_contrasts(study, index, design.n_boot).items():
        covered[name] = interval.lower <= truth[name] <= interval.upper
    removal = _removal(design, data, 1, store, index)
    drop = removal.bootstrap(lambda r: {"d": removal.resampled_drop(r, "singletons")}, n_boot=design.n_boot)["d"]
    covered[TYPES[2]] = drop.lower <= truth[TYPES[2]] <= drop.upper
    enrichment = fz_long_tail.enrichment_interval(study.subsampled, _atypical(data),
                                                  training_points(data, np.arange(data.n_train)), seed=index)
    for name in TYPES[7:9]:
        covered[name] = enrichment.lower <= truth[name] <= enrichment.upper
    # An end contrast without an interval (too few influential points) counts as not covering.
    ends = error_is_subpopulation.end_contrasts(study, index, n_boot=design.n_boot)
    for key, names in ERROR_ENDS.items():
        for name in names:
            covered[name] = ends[key].lower <= truth[name] <= ends[key].upper

    # Per point: one random point's interval against the same point's score from many more models.
    large = _approximation(design, data, design.truth_factor, store, index + 10**5)
    point = int(np.random.default_rng([index, 2]).integers(data.n_train))
    covered[TYPES[3]] = study.loo.lower[point] <= large.loo.score[point] <= study.loo.upper[point]
    fractional, fractional_truth = estimators.fractional(study.subsampled), estimators.fractional(large.subsampled)
    covered[TYPES[4]] = fractional.lower[point] <= fractional_truth.score[point] <= fractional.upper[point]

    # fractional-definition: the claim's interval (its one-way runs feed the power statement only).
    scores, counted = _fractional(design, index, store)
    difference = fractional_definition.fpr_difference(scores, counted.real, counted.memorized, counted.clusters,
                                                      seed=index, n_boot=design.n_boot, components=False)
    for name in FRACTIONAL:
        covered[name] = difference.lower <= truth[name] <= difference.upper
        covered[false_decision(name)] = _false_decision(difference, truth[name], THRESHOLDS[name])

    for name, interval in _correlations(design, store, index).items():
        covered[name] = interval.lower <= truth[name] <= interval.upper
    return covered


def false_decision(name: str) -> str:
    """The key under which :func:`replicate` says whether type ``name``'s verdict was false."""
    return f"{name}: false decision"


def _false_decision(interval, truth: float, threshold) -> bool:
    """Whether the claim's verdict on ``interval`` contradicts ``truth``: refuted while the truth lies
    on the claim's side of the threshold, or supported while it does not."""
    verdict = decide(Statistic("calibrated", interval.estimate, interval.lower, interval.upper, 1), threshold)
    holds = truth > threshold.value if threshold.direction == "above" else truth < threshold.value
    return (verdict == REFUTED and holds) or (verdict == SUPPORTED and not holds)


def _replicates(design: Design, indices: range, truth: dict) -> list[dict]:
    """A worker's share of the replicates, one torch thread, in a store of its own."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="memsuite-calibration-") as root:
        return [replicate(design, index, truth, Store(root)) for index in indices]


class _InProcess:
    """``pool.map`` in this process (one worker: no spawn, and what the caller patched applies)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)


def run(design: Design, replicates: int | None = None, workers: int | None = None,
        progress: bool = True) -> pd.DataFrame:
    """One row per interval type: coverage, its Wilson interval, replicates, whether it meets the target,
    and, for a type with a claim's threshold (``THRESHOLDS``), its false decisions.

    Replicates run in ``workers`` processes (default: one per core; 1: in this process), each on
    one torch thread; every replicate's seeds depend on its index only, so the table does not
    depend on ``workers``."""
    replicates = design.replicates if replicates is None else replicates
    workers = workers or os.cpu_count() or 1
    if replicates < 1 or workers < 1:
        raise ValueError(f"replicates and workers must be >= 1, got {replicates} and {workers}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memsuite-calibration-") as root:
        truth = population_truth(design, Store(root))
    if progress:
        print(f"  truth from {design.truth_draws} draws and {design.truth_configurations} configurations, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    hits = {name: 0 for name in [*TYPES, *map(false_decision, THRESHOLDS)]}
    chunks = [range(start, min(start + 10, replicates)) for start in range(0, replicates, 10)]
    done = 0
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else \
            _InProcess() as pool:
        for results in pool.map(_replicates, [design] * len(chunks), chunks, [truth] * len(chunks)):
            for covered in results:
                for name, held in covered.items():
                    hits[name] += bool(held)
            done += len(results)
            if progress:
                print(f"  {done}/{replicates} replicates, {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for name in TYPES:
        lower, upper = stats.wilson_interval(hits[name], replicates)
        coverage = hits[name] / replicates
        rows.append({"interval type": name, "coverage": coverage, "lower": lower, "upper": upper,
                     "replicates": replicates, "truth": truth.get(name, math.nan),
                     "false decisions": hits[false_decision(name)] if name in THRESHOLDS else None,
                     "meets target": TARGET[0] <= coverage <= TARGET[1] if name not in BIAS_CHECKS else None})
    return pd.DataFrame(rows).set_index("interval type")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller models and fewer resamples (minutes on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: interval type -> coverage")
    parser.add_argument("--replicates", type=int, default=None, help="replicates (default: 200 quick, 400 full)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    args = parser.parse_args(argv)
    for name in ("replicates", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    design = QUICK if args.quick else FULL
    table = run(design, args.replicates, args.workers, progress=not args.json)
    if args.json:
        print(json.dumps({name: float(row["coverage"]) for name, row in table.iterrows()}))
        return
    print(f"Coverage at nominal {NOMINAL} ({'quick' if args.quick else 'full'} design; target "
          f"{TARGET[0]} to {TARGET[1]}):")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
