"""The experiments claim tests share, each a few calls of the one training path.

- :func:`load_dataset`: the suite's data sets by name, built from a profile;
- :func:`loo_scores`: exact leave-one-out memorization (closed form for the ridge family,
  a LOO plan over targets stratified by sub-population size for the MLP);
- :func:`subsampled_scores`: Feldman & Zhang's estimate at sampling rate r;
- :func:`approximation_error`: both on the same points, joined into one DataFrame with
  error = subsampled - LOO, the point's sub-population size and bin, and its SPP (maximum
  softmax probability) from models trained with it (``spp``) and without it (``spp_out``).

Every ensemble goes through the store, so claims that need the same models share them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from harness import estimators
from harness import profiles as profiles_module
from harness.data import Dataset, digits, infer_subpopulations, synthetic
from harness.ensemble import Ensemble, train_ensemble
from harness.estimators import MemorizationScores
from harness.masks import full_plan, loo_plan, subsampled_plan
from harness.profiles import SIZE_BINS, Profile, size_bin
from harness.store import Store


# Synthetic variants the claims are parametrized over: (tail exponent, separation, label noise).
SYNTHETIC_VARIANTS = {
    "synthetic": {},
    "synthetic-steep": {"tail_exponent": 2.5},
    "synthetic-overlapping": {"separation": 0.75},
    "synthetic-noisy": {"label_noise": 0.05},
}


@lru_cache(maxsize=16)
def load_dataset(name: str, profile_name: str) -> Dataset:
    """A data set of the suite by name, sized by the profile; cached per process."""
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
    if name in ("mnist", "fashion-mnist"):
        from harness import images

        return images.load(name, limit_train=profile.image_limit_train,
                           limit_test=profile.image_limit_test)
    raise ValueError(f"unknown data set {name!r}; known: {sorted(SYNTHETIC_VARIANTS)} + "
                     "['digits', 'mnist', 'fashion-mnist']")


@dataclass(frozen=True)
class Case:
    """One parametrized case of a claim: a data set, a model family, and optionally a rate."""

    data: str
    family: str
    rate: float | None = None

    @property
    def id(self) -> str:
        return f"{self.family} on {self.data}" + (f" at r={self.rate}" if self.rate is not None else "")

    def spec(self, profile: Profile):
        if self.family not in ("ridge", "mlp"):
            raise ValueError(f"unknown model family {self.family!r}; use 'ridge' or 'mlp'")
        return profile.ridge if self.family == "ridge" else profile.mlp


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


def loo_scores(dataset: Dataset, spec, profile: Profile, store: Store, device: str = "cpu",
               seed: int = 0) -> tuple[MemorizationScores, Ensemble]:
    if spec.family == "ridge":
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


@dataclass(frozen=True, eq=False)
class ApproximationStudy:
    """Exact LOO and subsampled scores of the same points; ``table`` has one row per point."""

    loo: MemorizationScores
    subsampled: MemorizationScores
    table: pd.DataFrame
    models: int


def approximation_error(dataset: Dataset, spec, rate: float, profile: Profile, store: Store,
                        device: str = "cpu", seed: int = 0) -> ApproximationStudy:
    loo, loo_ensemble = loo_scores(dataset, spec, profile, store, device, seed)
    sub, sub_ensemble = subsampled_scores(dataset, spec, rate, profile.subsampled_models, store,
                                          device, seed)
    sub = sub.at(loo.points)
    full_rows = loo_ensemble.plan.left_out == -1
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
    return ApproximationStudy(loo, sub, table, loo_ensemble.n_models + sub_ensemble.n_models)
