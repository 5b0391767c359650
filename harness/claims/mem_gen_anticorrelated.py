"""mem-gen-anticorrelated (IMN25 5): across models, data sets and training settings, memorization
and test accuracy are strongly negatively correlated.

Per configuration, one subsampled ensemble gives the mean memorization score over the training
points, the test accuracy and the training accuracy (means over models). Mean memorization is
close to the generalization gap by construction (P_in ~ training accuracy, P_out ~ accuracy on
unseen points), so a negative correlation with test accuracy follows from the gap alone whenever
training accuracy varies less than test accuracy. The claim is decided on two parts, both of
which must hold (intersection-union):

    raw         = Pearson r(mean memorization, test accuracy)                        (the sentence)
    beyond gap  = partial r(mean memorization, test accuracy | generalization gap)   (its content)

each with a Fisher z interval over the configurations (the jackknife, a t quantile), widened by
the models' own noise (``harness.experiments.correlation_across_configurations``: every
ensemble's models resampled, the gap recomputed from the same models); each part holds when its
upper bound is below 0 (the sign of the claim; IMN25 reports -0.997 over 19 configurations, its
own text also prints "0.997"). The second part asks whether memorization says anything about
test accuracy that the gap does not: where memorization only restates the gap it is near 0,
and the claim is inconclusive however strong the raw correlation.

Negative control: the same two parts with each configuration's accuracies (test and training,
from its own models) shuffled across configurations.

The study (:func:`configurations`, :func:`measure`): per configuration, one subsampled ensemble
at FZ20's r = 0.7 on its data set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness import controls
from harness.experiments import correlation_across_configurations, load_dataset, subsampled_scores
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RATE
from harness.verdict import Control, Decision, Statistic, Threshold, intersection_union

CLAIM = "mem-gen-anticorrelated"
THRESHOLD = Threshold(0.0, "below", "IMN25 5: memorization and test accuracy are negatively correlated (the "
                                    "sign of the claim; the paper reports -0.997, its text also '0.997'), "
                                    "beyond what the generalization gap alone gives")
CONTROL = ("which accuracies belong to which configuration (test and training accuracies shuffled across "
           "configurations, each with its own models)")
PARTS = {None: "Pearson r(mean memorization, test accuracy)",
         "generalization gap": "partial Pearson r(mean memorization, test accuracy | generalization gap)"}
NOTE = "Fisher z: the jackknife over configurations plus the models' variance"


def correlation(measured: list, seed: int = 0, given: str | None = None, suffix: str = "") -> Statistic:
    """One correlation across configurations as a statistic (``given``: see
    ``harness.experiments.GIVEN``)."""
    name = PARTS.get(given) or f"partial Pearson r(mean memorization, test accuracy | {given})"
    models = max(len(item[1]) for item in measured)
    return Statistic.from_interval(name + suffix, correlation_across_configurations(measured, seed, given=given),
                                   unit="configurations", note=NOTE,
                                   models_per_arm={"models per configuration": models})


def decide(measured: list, seed: int = 0) -> Decision:
    """From one ``(MemorizationScores, per-model test accuracies, per-model training accuracies)``
    triple per configuration."""
    parts = [correlation(measured, seed, given) for given in PARTS]
    scores = [item[0] for item in measured]
    accuracies = controls.shuffled([item[1:] for item in measured], seed)
    shuffled = [(score, *accuracy) for score, accuracy in zip(scores, accuracies)]
    control = [correlation(shuffled, seed, given, ", accuracies shuffled across configurations") for given in PARTS]
    return Decision(intersection_union(parts, THRESHOLD), THRESHOLD,
                    Control(intersection_union(control, THRESHOLD), CONTROL), parts)


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
