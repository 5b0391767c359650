"""Budgets of the suite: every size, count and recipe a claim test uses, in one place.

``smoke`` is what CI runs (minutes on 2 CPU cores), ``default`` a laptop CPU (every claim in
about 20 minutes on 2 cores), ``paper`` the papers' scale, meant for a GPU (IMN25 4.2: 100
models per LOO target; FZ20: thousands of subsampled models).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.data import SubpopulationSpec
from harness.train import MLPSpec, RidgeSpec

# Sub-population size bins of the claims (CLAIMS.md, approx-overestimates: "small" = 2 to 10).
SIZE_BINS = {"singleton": (1, 1), "small": (2, 10), "large": (11, 10**9)}


def size_bin(sizes):
    """Name of the bin of each sub-population size ('unknown' for 0)."""
    import numpy as np

    sizes = np.asarray(sizes)
    names = np.full(sizes.shape, "unknown", dtype=object)
    for name, (low, high) in SIZE_BINS.items():
        names[(sizes >= low) & (sizes <= high)] = name
    return names


@dataclass(frozen=True)
class Profile:
    name: str
    synthetic: SubpopulationSpec
    ridge: RidgeSpec
    mlp: MLPSpec
    loo_draws: int                 # ridge: draws on the full set (closed-form LOO for every point)
    loo_models_per_target: int     # MLP: models on S and on S minus each target
    loo_targets_per_bin: int       # MLP: LOO targets drawn from each size bin
    subsampled_models: int         # k of Feldman & Zhang's estimator
    removal_models: int            # models per arm of a removal (marginal utility) experiment
    hypothesis_examples: int
    digits_limit: int | None = None
    image_limit_train: int = 2000
    image_limit_test: int = 1000
    rates: tuple = (0.5, 0.7, 0.9)
    notes: dict = field(default_factory=dict)


SMOKE = Profile(
    name="smoke",
    synthetic=SubpopulationSpec(num_classes=4, dim=24, subpops_per_class=8, largest=40,
                                singletons_per_class=4),
    ridge=RidgeSpec(features=256),
    mlp=MLPSpec(width=64, epochs=12, batch_size=32),
    loo_draws=40, loo_models_per_target=8, loo_targets_per_bin=4,
    subsampled_models=120, removal_models=16, hypothesis_examples=4, digits_limit=400,
)

DEFAULT = Profile(
    name="default",
    synthetic=SubpopulationSpec(num_classes=5, dim=32, subpops_per_class=12, largest=80,
                                singletons_per_class=6),
    ridge=RidgeSpec(features=384),
    mlp=MLPSpec(width=128, epochs=20, batch_size=32),
    loo_draws=100, loo_models_per_target=16, loo_targets_per_bin=10,
    subsampled_models=300, removal_models=32, hypothesis_examples=10,
)

PAPER = Profile(
    name="paper",
    synthetic=SubpopulationSpec(num_classes=10, dim=64, subpops_per_class=30, largest=300,
                                singletons_per_class=20),
    ridge=RidgeSpec(features=2048),
    mlp=MLPSpec(width=512, depth=2, epochs=40, batch_size=128, models_per_pass=200),
    loo_draws=1000, loo_models_per_target=100, loo_targets_per_bin=67,
    subsampled_models=4000, removal_models=200, hypothesis_examples=50,
)

PROFILES = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def with_synthetic(profile: Profile, **changes) -> SubpopulationSpec:
    """The profile's synthetic generator with some parameters changed (e.g. tail_exponent)."""
    return replace(profile.synthetic, **changes)
