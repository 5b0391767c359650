"""The experiments claim tests share, each a few calls of the one training path.

- :func:`load_dataset`: the suite's data sets by name, built from a profile (:func:`load_or_skip`
  turns a missing image data set into a skipped test), and one's own registered by name with
  :func:`register_dataset` (``harness.runner``), the same whatever the profile;
- :func:`loo_scores`: exact leave-one-out memorization (closed form for the ridge family,
  a LOO plan over targets stratified by sub-population size for the MLP);
- :func:`subsampled_scores`: Feldman & Zhang's estimate at sampling rate r;
- :func:`approximation_error`: both on the same points, joined into one DataFrame with
  error = subsampled - LOO, the point's sub-population size and bin, and its SPP (maximum
  softmax probability) from models trained with it (``spp``) and without it (``spp_out``).

Every ensemble goes through the store, so claims that need the same models share them.

Image data sets (:data:`IMAGE_DATASETS`) are a seeded class-stratified subset of
``profile.image_limit_train`` training and ``profile.image_limit_test`` test images. Their
sub-populations are unknown, so they are inferred by Ward clustering within each class
(:func:`harness.data.infer_subpopulations`) on learned features: the last hidden layer of one
``pixel_mlp`` (``harness.zoo``) trained on ``profile.image_embedding_pool`` *other* training
images (a stratified draw from the images the subset leaves out; from the subset itself when
it is the whole split). Learned, because pixel distances group images by stroke thickness and
brightness more than by what they show; a network that never saw the subset, because a network
trained on a point pulls it toward its labelled class, which would hide exactly the atypical
points whose sub-populations matter here; an MLP rather than ``small_cnn``, because on a CPU it
learns from 5,000 images in the time the CNN needs for 1,000, and reaches higher accuracy there
(MNIST 95 % vs 69 %, Fashion-MNIST 85 % vs 69 %, one core, ~6 s each).

``<image set>-noisy`` (:data:`NOISY_IMAGE_VARIANTS`) is that subset with planted label noise, as
``synthetic-noisy`` is the synthetic set with it: a seeded ``LABEL_NOISE`` of its training
labels replaced by a random other class (``harness.data.with_planted_label_noise``, recorded in
``mislabeled_train``), test labels clean. Its sub-populations are the clean subset's, inferred
before the labels change: the clustering reads the labels (Ward within each labelled class, cut
at a multiple of the within-class nearest-neighbour distance; the embedding network learns from
the pool's own clean labels), so inferring after the flip would put each flipped image in a
cluster of the class it does not show, most likely as a singleton.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from harness import estimators, stats
from harness import profiles as profiles_module
from harness.data import UNKNOWN_GROUP, Dataset, digits, infer_subpopulations, synthetic, with_planted_label_noise
from harness.ensemble import Ensemble, torch_threads, train_ensemble
from harness.estimators import MemorizationScores
from harness.grouped import grouped_plan, grouped_scores
from harness.images import DatasetNotFound
from harness.masks import full_plan, loo_plan, subsampled_plan
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RATE, SIZE_BINS, Profile, size_bin
from harness.specs import RECIPES
from harness.store import Store, default_root
from harness.train import RidgeSpec


# Share of training labels the noisy variants (synthetic-noisy, the images' NOISY_IMAGE_VARIANTS) get wrong.
LABEL_NOISE = 0.05

# Synthetic variants the claims are parametrized over: tail exponent, separation, label noise, class structure.
SYNTHETIC_VARIANTS = {
    "synthetic": {},
    "synthetic-steep": {"tail_exponent": 2.5},
    "synthetic-overlapping": {"separation": 0.75},
    "synthetic-noisy": {"label_noise": LABEL_NOISE},
    # The class shapes the centres: at 1.5 a singleton's nearest other training point shares its class
    # for 67 % of the default profile's singletons (23 % without class structure): some typical, some not.
    "synthetic-classes": {"class_spread": 1.5},
}


# One's own data sets by name (register_dataset): the claim studies load every data set by name.
_REGISTERED: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> str:
    """Make ``dataset`` loadable by its name (:func:`load_dataset`); return the name. The suite's
    own names are refused: a study would not know which data it had."""
    if (dataset.name in SYNTHETIC_VARIANTS or dataset.name == "digits" or dataset.name in IMAGE_DATASETS
            or dataset.name in NOISY_IMAGE_VARIANTS):
        raise ValueError(f"{dataset.name!r} names one of the suite's data sets; give yours another name")
    _REGISTERED[dataset.name] = dataset
    load_dataset.cache_clear()   # a name registered again now means the new data
    return dataset.name


@lru_cache(maxsize=16)
def load_dataset(name: str, profile_name: str) -> Dataset:
    """A registered data set by name, else one of the suite's, sized by the profile; cached per process."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    profile = profiles_module.get(profile_name)
    if name in SYNTHETIC_VARIANTS:
        data = synthetic(profiles_module.with_synthetic(profile, **SYNTHETIC_VARIANTS[name]))
        return replace(data, name=name)
    if name == "digits":
        data = digits()
        if profile.digits_limit is not None and data.n_train > profile.digits_limit:
            drop = np.ones(data.n_train, dtype=bool)
            drop[np.random.default_rng(0).choice(data.n_train, profile.digits_limit, replace=False)] = False
            data = data.without(drop)
        return infer_subpopulations(data)
    if name in IMAGE_DATASETS:
        return load_image_dataset(name, profile)
    if name in NOISY_IMAGE_VARIANTS:
        clean = load_dataset(NOISY_IMAGE_VARIANTS[name], profile_name)
        return with_planted_label_noise(clean, LABEL_NOISE, LABEL_NOISE_SEED, name=name)
    raise ValueError(f"unknown data set {name!r}; known: {sorted(SYNTHETIC_VARIANTS)} + "
                     f"['digits'] + {list(IMAGE_DATASETS)} + {list(NOISY_IMAGE_VARIANTS)}")


@lru_cache(maxsize=4)
def with_other_embedding(name: str, profile_name: str, embedding_seed: int) -> Dataset:
    """The image data set of :func:`load_dataset` with its sub-populations inferred on another
    embedding network's features (seed ``embedding_seed``), to check how much they depend on it."""
    return load_image_dataset(name, profiles_module.get(profile_name), embedding_seed)


def load_or_skip(name: str, profile_name: str) -> Dataset:
    """:func:`load_dataset`, skipping the calling test (with where to get the files) when an
    image data set is not on this machine."""
    try:
        return load_dataset(name, profile_name)
    except DatasetNotFound as missing:
        import pytest

        pytest.skip(str(missing))


IMAGE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")
# Each image set with planted label noise (module docstring), by name, and the clean set it comes from.
NOISY_IMAGE_VARIANTS = {f"{name}-noisy": name for name in IMAGE_DATASETS}
# The natural images a CPU profile runs the claims on: on disk here (MNIST from ../shared/data,
# Fashion-MNIST from Debian's dataset-fashion-mnist); a case skips, saying where to get them, elsewhere.
REAL_IMAGES = ("mnist", "fashion-mnist")
EMBEDDING_MODEL, EMBEDDING_RECIPE = "pixel_mlp", "embedding"
SUBSET_SEED, POOL_SEED, LABEL_NOISE_SEED = 0, 1, 2


def load_image_dataset(name: str, profile: Profile, embedding_seed: int = POOL_SEED) -> Dataset:
    """The profile's stratified subset of an image data set, with inferred sub-populations
    (module docstring); ``embedding_seed`` seeds the embedding network (the same pool of images
    whatever the seed). Raises ``DatasetNotFound`` when the files are missing."""
    from harness import images, zoo

    full = images.load(name)
    y_train = full.y_train.numpy()
    subset = images.limited(y_train, profile.image_limit_train, SUBSET_SEED)
    test = images.limited(full.y_test.numpy(), profile.image_limit_test, SUBSET_SEED)
    others = np.setdiff1d(np.arange(full.n_train), subset)
    disjoint = len(others) > 0
    candidates = others if disjoint else subset
    pool = candidates[images.stratified_subset(y_train[candidates], profile.image_embedding_pool, POOL_SEED)]
    data = replace(full, x_train=full.x_train[subset], y_train=full.y_train[subset],
                   x_test=full.x_test[test], y_test=full.y_test[test],
                   meta={**full.meta, "limit_train": profile.image_limit_train,
                         "limit_test": profile.image_limit_test, "seed": SUBSET_SEED})
    fit_on = replace(full, x_train=full.x_train[pool], y_train=full.y_train[pool],
                     x_test=full.x_test[:0], y_test=full.y_test[:0])
    cache = default_root() / "features" / (f"{name}-{data.fingerprint}-{fit_on.fingerprint}-"
                                           f"{EMBEDDING_MODEL}-{EMBEDDING_RECIPE}-{embedding_seed}.npz")
    if cache.exists():
        with np.load(cache) as stored:
            features = (stored["train"], stored["test"])
    else:
        # One thread: the clustering, and with it the store key of every run, must not depend on
        # how many threads a process happens to use.
        with torch_threads(1):
            features = zoo.penultimate_features(EMBEDDING_MODEL, fit_on, (data.x_train, data.x_test),
                                                RECIPES[EMBEDDING_RECIPE], seed=embedding_seed)
        # Cached beside the runs it keys: warm runs (and every xdist worker) skip the fit.
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, train=features[0], test=features[1])
        os.replace(partial, cache)
    data = infer_subpopulations(data, features=features)
    embedding = (f"last hidden layer of one {EMBEDDING_MODEL} ({EMBEDDING_RECIPE} recipe, seed {embedding_seed}) "
                 f"trained on {len(pool)} training images " + ("outside the subset" if disjoint else "of the subset"))
    return replace(data, meta={**data.meta, "embedding": embedding})


def subpopulation_summary(dataset: Dataset) -> str:
    """Sizes of a data set's training sub-populations in words, for a case report's notes."""
    sizes = dataset.group_size_train
    if not sizes.any():
        return "sub-populations unknown"
    groups = np.unique(dataset.group_train[sizes > 0], return_counts=True)[1]
    parts = []
    for name, (low, high) in SIZE_BINS.items():
        chosen = groups[(groups >= low) & (groups <= high)]
        parts.append(f"{len(chosen)} {name} ({int(chosen.sum())} points)")
    return (f"{len(groups)} sub-populations: " + ", ".join(parts) +
            f"; largest {int(groups.max())}, median {float(np.median(groups)):g}")


@dataclass(frozen=True)
class Case:
    """One case of a claim: a data set by name, a model family and optionally a rate. ``model``
    names one of the profile's families (``ridge``, ``mlp``, ``cnn``) or is a family of one's
    own (a ``harness.model_family.ModelFamily``, or any spec of the training path)."""

    data: str
    model: str | object
    rate: float | None = None

    @property
    def family(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.family

    @property
    def id(self) -> str:
        return f"{self.family} on {self.data}" + (f" at r={self.rate}" if self.rate is not None else "")

    @property
    def on_real_images(self) -> bool:
        """Whether the data are one of ``REAL_IMAGES`` (the profile lightens some designs there)."""
        return self.data in REAL_IMAGES

    def spec(self, profile: Profile):
        if not isinstance(self.model, str):
            return self.model
        specs = {"ridge": profile.ridge, "mlp": profile.mlp, "cnn": profile.cnn}
        if self.model not in specs:
            raise ValueError(f"unknown model family {self.model!r}: give one of {sorted(specs)} or a ModelFamily")
        return specs[self.model]


def removal_cases(profile: Profile) -> list[Case]:
    """The cases of the removal claims that score with FZ20's estimator and remove above its cut
    (leakage, removal-shifts-distribution): ridge on the synthetic data in the smoke profile;
    otherwise both families on the synthetic sets and digits, and the pixel MLP on the real
    images (their arms S and S \\ R are fz-marginal-utility's, so the store trains them once)."""
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case(data, "mlp", FZ20_RATE) for data in REAL_IMAGES]


# The figures of one configuration that a correlation across configurations can relate.
FIGURES = ("mean memorization", "share memorized", "test accuracy", "training accuracy", "generalization gap")


def configuration_figures(measured: list, weights: list | None = None,
                          high: float = FZ20_HIGH_INFLUENCE) -> dict[str, np.ndarray]:
    """Each of ``FIGURES`` per configuration, every model weighted by ``weights`` (one array per
    configuration; None: all models once). "share memorized" is the share of training points
    scoring >= ``high``; the gap is training minus test accuracy."""
    def mean_over_models(per_model, w):
        return np.mean(per_model) if w is None else np.asarray(per_model) @ w / w.sum()

    weights = weights or [None] * len(measured)
    # All models once: the scores as computed, so the figures match the reports' exactly.
    scores = [item[0].score if w is None else item[0].rescored(w) for item, w in zip(measured, weights)]
    out = {"mean memorization": np.array([np.nanmean(s) for s in scores]),
           "share memorized": np.array([np.mean(s[~np.isnan(s)] >= high) for s in scores]),
           "test accuracy": np.array([mean_over_models(item[1], w) for item, w in zip(measured, weights)])}
    if all(len(item) > 2 for item in measured):
        out["training accuracy"] = np.array([mean_over_models(item[2], w) for item, w in zip(measured, weights)])
        out["generalization gap"] = out["training accuracy"] - out["test accuracy"]
    return out


def correlation_across_configurations(measured: list, seed: int = 0, n_boot: int = 1000,
                                      x: str = "mean memorization", given: str | None = None) -> stats.CrossedInterval:
    """Pearson r of figure ``x`` and test accuracy across configurations, each a
    ``(MemorizationScores, per-model test accuracies[, per-model training accuracies])`` from one
    ensemble: the jackknife over configurations plus the variance of atanh r when every
    configuration's models are resampled (``harness.stats.pearson_with_model_noise``). With
    ``given`` (another of ``FIGURES``, from the same resampled models), the partial r, whose
    interval is the jackknife's alone (the models' variance only splits it for power)."""
    for name in (x, given):
        if name is not None and name not in FIGURES:
            raise ValueError(f"{name!r} is not one of {FIGURES}")
    if {x, given} & {"training accuracy", "generalization gap"} and any(len(item) < 3 for item in measured):
        raise ValueError(f"{x} given {given} needs each configuration's training accuracies")

    def fisher_z(replicate):
        figures = configuration_figures(measured, [replicate.models[str(i)] for i in range(len(measured))])
        r = stats.row_correlation(figures[x], figures["test accuracy"], figures[given] if given else None)
        return {"z": np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))}

    pools = {str(i): item[0].model_groups for i, item in enumerate(measured)}
    models = sum(len(item[1]) for item in measured)
    resampled = stats.crossed_bootstrap(fisher_z, pools, n_boot=n_boot, seed=seed, components=False)["z"]
    figures = configuration_figures(measured)
    if not math.isfinite(resampled.var_both):
        # E.g. every configuration fits its training points: training accuracy is 1 in each, and a
        # correlation given it does not exist.
        return stats.CrossedInterval(math.nan, math.nan, math.nan, len(measured),
                                     f"undefined in {resampled.undefined} of {n_boot} resamples: a figure it "
                                     f"correlates or holds fixed is the same in every configuration",
                                     models=models, scale="atanh")
    return stats.pearson_with_model_noise(figures[x], figures["test accuracy"], resampled.var_both, models,
                                          given=figures[given] if given else None)


def pick_targets(dataset: Dataset, per_bin: int, seed: int = 0) -> np.ndarray:
    """LOO targets: up to ``per_bin`` points from each size bin (random points if sizes are unknown)."""
    rng = np.random.default_rng(seed)
    sizes = dataset.group_size_train
    if not sizes.any():
        return np.sort(rng.choice(dataset.n_train, min(dataset.n_train, per_bin * len(SIZE_BINS)),
                                  replace=False))
    chosen = []
    for low, high in SIZE_BINS.values():
        members = np.flatnonzero((sizes >= low) & (sizes <= high))
        chosen.append(rng.choice(members, min(per_bin, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def scores_loo_in_closed_form(spec) -> bool:
    """Whether ``spec`` gives every point's exact LOO margin in closed form: a ``RidgeSpec`` that
    computes it. Decided by type, not by name: a family of one's own may be called "ridge"."""
    return isinstance(spec, RidgeSpec) and spec.closed_form_loo


def loo_scores(dataset: Dataset, spec, profile: Profile, store: Store, device: str = "cpu",
               seed: int = 0) -> tuple[MemorizationScores, Ensemble]:
    if scores_loo_in_closed_form(spec):
        ensemble = train_ensemble(dataset, spec, full_plan(dataset.n_train, profile.loo_draws),
                                  store, seed, device)
        return estimators.closed_form_loo(ensemble.masks, ensemble.arrays["train_margin"],
                                          ensemble.arrays["loo_margin"]), ensemble
    targets = pick_targets(dataset, profile.loo_targets_per_bin, seed)
    plan = loo_plan(dataset.n_train, targets, profile.loo_models_per_target)
    ensemble = train_ensemble(dataset, spec, plan, store, seed, device)
    return estimators.exact_loo(ensemble.masks, ensemble.arrays["train_margin"], plan.left_out), ensemble


def subsampled_scores(dataset: Dataset, spec, rate: float, models: int, store: Store,
                      device: str = "cpu", seed: int = 0) -> tuple[MemorizationScores, Ensemble]:
    plan = subsampled_plan(dataset.n_train, models, rate, seed)
    ensemble = train_ensemble(dataset, spec, plan, store, seed, device)
    return estimators.subsampled(ensemble.masks, ensemble.arrays["train_margin"]), ensemble


def selection_scores(dataset: Dataset, spec, profile: Profile, store: Store, device: str = "cpu",
                     seed: int = 0, rate: float | None = FZ20_RATE, targets=None,
                     grouped: bool = False) -> tuple[np.ndarray, int]:
    """A memorization score per training point (NaN where not scored) and the models behind it.

    ``rate`` given: FZ20's subsampled estimator at that sampling rate (FZ20: 0.7) with
    ``profile.subsampled_models`` models, every point. ``rate=None``: exact leave-one-out; the
    ridge family scores every point in closed form, the MLP only ``targets`` (a LOO plan of
    ``profile.loo_models_per_target`` models per target or, with ``grouped``, as many per
    compatible group of them: :mod:`harness.grouped`). With ``targets``, points outside them
    get NaN and are never selected.
    """
    scores = np.full(dataset.n_train, np.nan)
    if rate is not None:
        if targets is not None:
            raise ValueError("targets apply to exact LOO (rate=None) only; the subsampled estimator "
                             "scores every point")
        found, ensemble = subsampled_scores(dataset, spec, rate, profile.subsampled_models, store,
                                            device, seed)
    elif scores_loo_in_closed_form(spec):
        found, ensemble = loo_scores(dataset, spec, profile, store, device, seed)
    else:
        if targets is None:
            raise ValueError(f"exact LOO of every point needs the ridge family's closed form; for the "
                             f"{spec.family} family pass the targets to score")
        if grouped:
            groups = grouped_plan(dataset, targets, profile.loo_models_per_target)
            ensemble = train_ensemble(dataset, spec, groups.plan, store, seed, device)
            found = grouped_scores(groups, ensemble.arrays["train_margin"])
        else:
            plan = loo_plan(dataset.n_train, targets, profile.loo_models_per_target)
            ensemble = train_ensemble(dataset, spec, plan, store, seed, device)
            found = estimators.exact_loo(ensemble.masks, ensemble.arrays["train_margin"], plan.left_out)
    scores[found.points] = found.score
    if targets is not None:
        outside = np.ones(dataset.n_train, dtype=bool)
        outside[np.asarray(targets, dtype=np.int64)] = False
        scores[outside] = np.nan
    return scores, ensemble.n_models


def describe_scores(rate: float | None, models: int, grouped: bool = False) -> str:
    """How the selection scores were computed, for a report's notes."""
    method = (f"FZ20's subsampled estimator at r={rate}" if rate is not None
              else "grouped leave-out (checked against exact LOO by grouped-leave-out)" if grouped
              else "exact leave-one-out")
    return f"scores: {method} ({models} models)"


def paired_loo(ensemble: Ensemble) -> MemorizationScores | None:
    """Exact LOO at the subsampled models' own training size r n, paired on the same draws: each
    model's closed-form refit without the point (ridge family only; None for the others)."""
    if "loo_margin" not in ensemble.arrays:
        return None
    return estimators.closed_form_loo(ensemble.masks, ensemble.arrays["train_margin"], ensemble.arrays["loo_margin"])


def training_points(dataset: Dataset, points: np.ndarray, strata=None) -> stats.Points:
    """Training points to resample by sub-population (``harness.stats.Points``)."""
    groups = (dataset.group_train if dataset.group_train is not None
              else np.full(dataset.n_train, UNKNOWN_GROUP))
    return stats.Points(groups[points], strata)


@dataclass(frozen=True, eq=False)
class ApproximationStudy:
    """Exact LOO and subsampled scores of the same points; ``table`` has one row per point.

    ``paired`` (ridge family): exact LOO at size r n on the subsampled models' own draws
    (:func:`paired_loo`), the same model rows as ``subsampled``. :meth:`bootstrap` resamples the
    models of both estimates (each in its own pools) and the scored points by sub-population
    within their size bins (``harness.stats.crossed_bootstrap``).
    """

    loo: MemorizationScores
    subsampled: MemorizationScores
    table: pd.DataFrame
    models: int
    points: stats.Points
    paired: MemorizationScores | None = None

    @property
    def loo_models_per_pool(self) -> dict[str, int]:
        """The LOO arm's models: all draws (closed form), or per target and on S (a LOO plan)."""
        pools = np.unique(self.loo.model_groups, return_counts=True)[1]
        return {"LOO models" + (" per target and on S" if len(pools) > 1 else ""): int(pools.max())}

    @property
    def models_per_arm(self) -> dict[str, int]:
        return {"subsampled models": len(self.subsampled.model_groups)} | self.loo_models_per_pool

    def errors(self, replicate) -> np.ndarray:
        """subsampled - LOO for every scored point under the replicate's models."""
        return (self.subsampled.rescored(replicate.models["subsampled"])
                - self.loo.rescored(replicate.models["loo"]))

    def bootstrap(self, statistic, n_boot: int = 1000, seed: int = 0, components: bool = True,
                  reselects: bool = False, around_estimate: bool = False,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict:
        return stats.crossed_bootstrap(statistic, {"loo": self.loo.model_groups,
                                                   "subsampled": self.subsampled.model_groups},
                                       {"scored": self.points}, n_boot=n_boot, seed=seed, components=components,
                                       reselects=reselects, around_estimate=around_estimate, bounds=bounds)


def approximation_error(dataset: Dataset, spec, rate: float, profile: Profile, store: Store,
                        device: str = "cpu", seed: int = 0) -> ApproximationStudy:
    loo, loo_ensemble = loo_scores(dataset, spec, profile, store, device, seed)
    sub, sub_ensemble = subsampled_scores(dataset, spec, rate, profile.subsampled_models, store,
                                          device, seed)
    paired = paired_loo(sub_ensemble)
    sub = sub.at(loo.points)
    full_rows = loo_ensemble.plan.left_out == -1
    # train_spp is a network's confidence (IMN25's SPP); for ridge the same softmax of least-squares
    # outputs, a score of the fit (harness.train's docstring).
    spp = loo_ensemble.arrays["train_spp"][full_rows][:, loo.points].mean(0)
    held_out = ~sub_ensemble.masks[:, loo.points]
    spp_out = (sub_ensemble.arrays["train_spp"][:, loo.points] * held_out).sum(0) / held_out.sum(0)
    sizes = dataset.group_size_train[loo.points]
    table = pd.DataFrame({
        "point": loo.points, "loo": loo.score, "loo_lower": loo.lower, "loo_upper": loo.upper,
        "subsampled": sub.score, "sub_lower": sub.lower, "sub_upper": sub.upper,
        "error": sub.score - loo.score, "size": sizes, "bin": size_bin(sizes), "spp": spp,
        "spp_out": spp_out,
        "mislabeled": (dataset.mislabeled_train[loo.points] if dataset.mislabeled_train is not None
                       else np.zeros(len(loo.points), dtype=bool)),
    })
    return ApproximationStudy(loo, sub, table, loo_ensemble.n_models + sub_ensemble.n_models,
                              training_points(dataset, loo.points, table["bin"].to_numpy()),
                              None if paired is None else paired.at(loo.points))
