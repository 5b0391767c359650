"""mem-gen-anticorrelated (IMN25 5): across models, data sets and training settings, memorization
and test accuracy are strongly negatively correlated.

Per configuration, one subsampled ensemble gives the mean memorization score over the training
points and the test accuracy (mean over models). Across configurations,

    decisive = Pearson r(mean memorization, test accuracy)

with a Fisher z interval over the configurations, widened by the models' own noise (the
variance of atanh r when every ensemble's models are resampled,
``harness.experiments.correlation_across_configurations``); the claim holds when its upper
bound is below 0 (the sign of the claim; IMN25 reports -0.997 over 19 configurations, and its
own text also prints "0.997"). The configurations' variance is the jackknife's, with a t
quantile, because configurations are not bivariate normal.

Negative control: the same correlation with the configurations' test accuracies (each with
its own models) shuffled across configurations.

The study (:func:`configurations`, :func:`measure`): per configuration, one subsampled ensemble
at FZ20's r = 0.7 on its data set. Beside the decision, :func:`partial_pearson` gives the
correlation given training accuracy (mean memorization is about the generalization gap, so the
raw correlation follows from the gap whenever training accuracy varies less than test accuracy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as scipy_stats

from harness import controls
from harness.experiments import correlation_across_configurations, load_dataset, subsampled_scores
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RATE
from harness.verdict import Control, Decision, Statistic, Threshold

CLAIM = "mem-gen-anticorrelated"
THRESHOLD = Threshold(0.0, "below", "IMN25 5: memorization and test accuracy are negatively correlated (the "
                                    "sign of the claim; the paper reports -0.997, its text also '0.997')")
CONTROL = ("which test accuracy belongs to which configuration (accuracies shuffled across configurations, each "
           "with its own models)")
NAME = "Pearson r(mean memorization, test accuracy)"


def decide(measured: list, seed: int = 0) -> Decision:
    """From one ``(MemorizationScores, per-model test accuracies)`` pair per configuration."""
    models = max(len(accuracy) for _, accuracy in measured)
    decisive = Statistic.from_interval(NAME, correlation_across_configurations(measured, seed), unit="configurations",
                                       note="Fisher z: the jackknife over configurations plus the models' variance",
                                       models_per_arm={"models per configuration": models})
    scores, accuracies = zip(*measured)
    shuffled = list(zip(scores, controls.shuffled(accuracies, seed)))
    control = Statistic.from_interval(f"{NAME}, accuracies shuffled across configurations",
                                      correlation_across_configurations(shuffled, seed), unit="configurations")
    return Decision(decisive, THRESHOLD, Control(control, CONTROL))


HIGH_SCORE = FZ20_HIGH_INFLUENCE
AUGMENTATION_NOISE = 0.25  # input-noise standard deviation; the features are of order 1


@dataclass(frozen=True)
class Configuration:
    label: str
    data: str
    spec: object


@dataclass(frozen=True)
class Grid:
    """The one case of this claim: all configurations, since the correlation runs across them."""

    configurations: tuple

    @property
    def id(self) -> str:
        return f"{len(self.configurations)} configurations"


def configurations(profile) -> list[Configuration]:
    mlp, ridge = profile.mlp, profile.ridge
    cheap = [
        Configuration("ridge, 1/4 features", "synthetic", replace(ridge, features=ridge.features // 4)),
        Configuration("ridge", "synthetic", ridge),
        Configuration("ridge, strong ridge", "synthetic", replace(ridge, ridge=1.0)),
        Configuration("ridge", "digits", ridge),
        Configuration("mlp", "synthetic", mlp),
        Configuration("mlp, no wd", "synthetic", replace(mlp, weight_decay=0.0)),
    ]
    if profile.name == "smoke":
        return cheap
    return cheap + [
        Configuration("ridge, 4x features", "synthetic", replace(ridge, features=ridge.features * 4)),
        Configuration("ridge", "synthetic-overlapping", ridge),
        Configuration("mlp, 1/4 width", "synthetic", replace(mlp, width=mlp.width // 4)),
        Configuration("mlp, 4x width", "synthetic", replace(mlp, width=mlp.width * 4)),
        Configuration("mlp, +1 layer", "synthetic", replace(mlp, depth=mlp.depth + 1)),
        Configuration("mlp, augmented", "synthetic", replace(mlp, input_noise=AUGMENTATION_NOISE)),
        Configuration("mlp, augmented, no wd", "synthetic",
                      replace(mlp, input_noise=AUGMENTATION_NOISE, weight_decay=0.0)),
        Configuration("mlp", "synthetic-overlapping", mlp),
        Configuration("mlp", "synthetic-steep", mlp),
        Configuration("mlp", "digits", mlp),
        Configuration("mlp, no wd", "digits", replace(mlp, weight_decay=0.0)),
        Configuration("mlp, augmented", "digits", replace(mlp, input_noise=AUGMENTATION_NOISE)),
    ]


def measure(configuration: Configuration, models: int, profile, store, device, seed=0):
    """One configuration's figures, and its scores and ensemble (for resampling its models)."""
    data = load_dataset(configuration.data, profile.name)
    scores, ensemble = subsampled_scores(data, configuration.spec, FZ20_RATE, models, store, device, seed)
    train_accuracy = float(ensemble.train_accuracy().mean())
    test_accuracy = float(ensemble.test_accuracy().mean())
    return {"configuration": f"{configuration.label} on {configuration.data}",
            "test accuracy": test_accuracy, "training accuracy": train_accuracy,
            "held-out training accuracy": float(scores.p_out.mean()),
            "generalization gap": train_accuracy - test_accuracy,
            "mean memorization": float(scores.score.mean()),
            f"share >= {HIGH_SCORE}": float((scores.score >= HIGH_SCORE).mean()),
            "models": ensemble.n_models}, (scores, ensemble)


def partial_pearson(x, y, control, alpha: float = 0.05) -> Statistic:
    """Pearson r of x and y given ``control``, with a Fisher interval on n - 4 degrees:

        r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)),
        (lower, upper) = tanh(atanh(r_xy.z) -/+ z_{0.975} / sqrt(n - 4)).
    """
    x, y, control = (np.asarray(v, dtype=float) for v in (x, y, control))
    n = len(x)
    if n < 5:
        raise ValueError(f"a partial correlation with one control needs at least 5 configurations, got {n}")
    r_xy, r_xz, r_yz = (np.corrcoef(a, b)[0, 1] for a, b in ((x, y), (x, control), (y, control)))
    r = float(np.clip((r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2)), -1.0, 1.0))
    half = scipy_stats.norm.ppf(1 - alpha / 2) / math.sqrt(n - 4)
    with np.errstate(divide="ignore"):  # r = +-1 gives the degenerate interval (r, r)
        centre = np.arctanh(r)
    return Statistic("partial Pearson r(mean memorization, test accuracy | training accuracy)", r,
                     np.tanh(centre - half), np.tanh(centre + half), n, unit="configurations",
                     note="Fisher z on n - 4; near -1 when memorization = training - test accuracy")
