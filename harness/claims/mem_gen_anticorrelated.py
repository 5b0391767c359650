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
"""

from __future__ import annotations

from harness import controls
from harness.experiments import correlation_across_configurations
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
