"""Budgets of the suite: every size, count and recipe a claim test uses, in one place.

``smoke`` is what CI runs (minutes on 2 CPU cores), ``default`` a laptop CPU (every claim in
about 20 minutes on 2 cores), ``paper`` the papers' scale, meant for a GPU (IMN25 4.2: 100
models per LOO target; FZ20: thousands of subsampled models).

Image data sets (``harness.experiments.load_dataset``) are class-stratified subsets of
``image_limit_train`` / ``image_limit_test`` images (None: all), their sub-populations
inferred on the features of one small network trained on ``image_embedding_pool`` other
training images (``harness.experiments``). ``cnn`` is the profile's conv family
(``harness.zoo.ConvSpec``).

The papers' image studies, as data for the paper profile:

- IMN25 4.2, approximation error: VGG-6 on CIFAR-10 with the ``paper`` recipe (100 epochs,
  batch 512, SGD momentum 0.9, triangular LR peaking at 0.4, weight decay 1e-5), exact LOO on
  200 points x 100 models (20,000 models) and 4,000 subsampled models at r = 0.7. ``PAPER``
  follows it: ``cnn`` is that VGG-6, 67 LOO targets from each of the three size bins (201
  points; IMN25 took its 200 "influential" points instead), 100 models per target, 4,000
  subsampled models. Augmentation (not stated in IMN25): flips and 2-pixel translations, as in
  the CIFAR-10 example of FFCV, which IMN25 trained with.
- IMN25 5, memorization vs accuracy: :data:`CORRELATION_STUDY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.data import SubpopulationSpec
from harness.train import MLPSpec, RidgeSpec
from harness.zoo import ConvSpec

# FZ20's sampling rate r of the subsampled estimator (CLAIMS.md: r = 0.7), also IMN25's.
FZ20_RATE = 0.7

# FZ20's high-influence cut: the 1,015 CIFAR-100 pairs it released have mem >= 0.25 (CLAIMS.md);
# also IMN25's first false-positive threshold.
FZ20_HIGH_INFLUENCE = 0.25

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
    image_limit_train: int | None = 1000
    image_limit_test: int | None = 500
    image_embedding_pool: int = 5000
    cnn: ConvSpec = ConvSpec()
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
    image_limit_train=400, image_limit_test=200, image_embedding_pool=2000,
    cnn=ConvSpec("small_cnn", "smoke", models_per_pass=4),
)

DEFAULT = Profile(
    name="default",
    synthetic=SubpopulationSpec(num_classes=5, dim=32, subpops_per_class=12, largest=80,
                                singletons_per_class=6),
    ridge=RidgeSpec(features=384),
    mlp=MLPSpec(width=128, epochs=20, batch_size=32),
    loo_draws=100, loo_models_per_target=16, loo_targets_per_bin=10,
    subsampled_models=300, removal_models=32, hypothesis_examples=10,
    # Ridge on 1,000 images: ~30 s a data set on one core (embedding network, the 400 models of
    # one approximation study, figures); an MLP study there would take ~5 minutes.
    image_limit_train=1000, image_limit_test=500, image_embedding_pool=5000,
    cnn=ConvSpec("small_cnn", "cpu_short", models_per_pass=8),
)

PAPER = Profile(
    name="paper",
    synthetic=SubpopulationSpec(num_classes=10, dim=64, subpops_per_class=30, largest=300,
                                singletons_per_class=20),
    ridge=RidgeSpec(features=2048),
    mlp=MLPSpec(width=512, depth=2, epochs=40, batch_size=128, models_per_pass=200),
    loo_draws=1000, loo_models_per_target=100, loo_targets_per_bin=67,
    subsampled_models=4000, removal_models=200, hypothesis_examples=50,
    image_limit_train=None, image_limit_test=None, image_embedding_pool=10_000,
    cnn=ConvSpec("vgg6", "paper", flip=True, translate=2, models_per_pass=16),
)

PROFILES = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def with_synthetic(profile: Profile, **changes) -> SubpopulationSpec:
    """The profile's synthetic generator with some parameters changed (e.g. tail_exponent)."""
    return replace(profile.synthetic, **changes)


# ---------------------------------------------------------------------------------------
# IMN25 5: memorization against test accuracy over 19 training configurations


@dataclass(frozen=True)
class PaperConfiguration:
    """One training configuration of IMN25 5: a model family on a data set, and its model count."""

    label: str
    data: str
    spec: ConvSpec
    models: int


# Models trained side by side per pass, sized for an 80 GB GPU at batch 512 (a guess, untested:
# lower it if memory runs out; it is part of the store key).
_MODELS_PER_PASS = {"vgg_0_5m": 16, "vgg_1m": 16, "vgg_8m": 4, "vgg_20m": 4, "resnet18_cifar": 4,
                    "resnet50_cifar": 1, "vit_tiny": 4, "vit_small": 2}


def _paper_configuration(model: str, data: str, optimizations: bool = True) -> PaperConfiguration:
    vit = model.startswith("vit")
    recipe = ("paper_vit" if vit else "paper") + ("" if optimizations else "_no_wd")
    spec = ConvSpec(model, recipe, flip=optimizations, translate=2 if optimizations else 0,
                    models_per_pass=_MODELS_PER_PASS[model])
    label = f"{model} on {data}" + ("" if optimizations else ", no weight decay or augmentation")
    # IMN25 5.1: "We train 2,000 models for each of the models. In the case of ViT, we train 500".
    return PaperConfiguration(label, data, spec, models=500 if vit else 2000)


_VGGS = ("vgg_0_5m", "vgg_1m", "vgg_8m", "vgg_20m")
_RESNETS = ("resnet18_cifar", "resnet50_cifar")
_VITS = ("vit_tiny", "vit_small")

# IMN25 5.1 names the eight models, the three data sets and a repeat of "our CIFAR-10
# experiments without these optimizations" (weight decay and augmentation), and counts 19
# configurations, but does not list them (its Figure 3 is not in the text). Eight models on
# three data sets plus a full CIFAR-10 repeat would be 32, so 19 is a subset; this one is OUR
# RECONSTRUCTION: all eight on CIFAR-10, the CNNs again on CIFAR-10 without weight decay and
# augmentation (ViTs hardly train on CIFAR-10 without augmentation), both ResNets on CIFAR-100
# and Tiny ImageNet, and VGG-20M on CIFAR-100.
CORRELATION_STUDY: tuple[PaperConfiguration, ...] = (
    *(_paper_configuration(m, "cifar10") for m in _VGGS + _RESNETS + _VITS),
    *(_paper_configuration(m, "cifar10", optimizations=False) for m in _VGGS + _RESNETS),
    *(_paper_configuration(m, "cifar100") for m in ("vgg_20m",) + _RESNETS),
    *(_paper_configuration(m, "tiny-imagenet") for m in _RESNETS),
)
