"""mem-gen-anticorrelated (IMN25 5): across models, data sets and training settings, memorization
and test accuracy are strongly negatively correlated.

Per configuration, one subsampled ensemble gives the mean memorization score over the training
points, the share of them scoring >= 0.25 ("memorized", FZ20's cut), the test accuracy and the
training accuracy (means over models).

Mean memorization is the held-out generalization gap by construction: each point is in the same
number of models of a balanced plan, so mean_i P_in(i) is the models' accuracy on their own
training points and mean_i P_out(i) their accuracy on training points they did not see. A
negative correlation of the mean with test accuracy therefore follows from the gap alone
whenever training accuracy varies less than test accuracy, and no correlation "given the gap"
can separate the two: the mean minus the test gap is the test split's accuracy minus the held-out
accuracy, a property of how the test split was drawn. What memorization can add is how it is
spread: at the same mean (the same gap), does memorizing more points go with lower test
accuracy? The claim is decided on two parts, both of which must hold (intersection-union):

    raw          = Pearson r(mean memorization, test accuracy)                          (the sentence)
    beyond mean  = partial r(share memorized, test accuracy | mean memorization)        (its content)

each with a Fisher z interval over the configurations (the jackknife, a t quantile); the raw r's
is widened by the models' own noise (``harness.experiments.correlation_across_configurations``:
every ensemble's models resampled, every figure recomputed from the same models), the partial
r's holds that noise in its jackknife alone (``harness.stats``, the calibration behind each
rule); each part holds when
its upper bound is below 0 (the sign of the claim; IMN25 reports -0.997 over 19 configurations,
its own text also prints "0.997"). FZ20's reading of the long tail predicts the opposite sign
for the second part (memorizing rare points helps on their rare test points).

Negative control: the same two parts with each configuration's accuracies (test and training,
from its own models) shuffled across configurations.

The study (:func:`configurations`, :func:`measure`): per configuration, one subsampled ensemble
at FZ20's r = 0.7 on its data set. On one's own data (:func:`own_configurations`, through
``harness.runner``) the configurations are one's own families on that data set, at least
MIN_CONFIGURATIONS of them: variants of one's model and training (widths, depths, weight decay,
epochs, optimizers), as IMN25 varied architectures and training settings; the correlation then
runs across them, one data set where IMN25 had three.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from harness import controls, plots, stats
from harness.experiments import REAL_IMAGES, correlation_across_configurations, load_dataset, subsampled_scores
from harness.images import DatasetNotFound
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RATE
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, intersection_union

CLAIM = "mem-gen-anticorrelated"
THRESHOLD = Threshold(0.0, "below", "IMN25 5: memorization and test accuracy are negatively correlated (the "
                                    "sign of the claim; the paper reports -0.997, its text also '0.997'), also "
                                    "at equal mean memorization (the held-out generalization gap)")
CONTROL = ("which accuracies belong to which configuration (test and training accuracies shuffled across "
           "configurations, each with its own models)")
PARTS = (("mean memorization", None), ("share memorized", "mean memorization"))  # (x, held fixed)
NOTE = "Fisher z: the jackknife over configurations plus the models' variance"
PARTIAL_NOTE = "Fisher z: the jackknife over configurations, which holds the models' noise once"
PAPER = {"figure": "Pearson -0.997 over 19 configurations (the text also prints 0.997)",
         "source": "IMN25 5 (VGG, ResNet, ViT on CIFAR-10/100 and Tiny ImageNet, with and without weight decay "
                   "and augmentation)"}


def correlation(measured: list, seed: int = 0, x: str = "mean memorization", given: str | None = None,
                suffix: str = "") -> Statistic:
    """One correlation of ``x`` with test accuracy across configurations as a statistic (``x``
    and ``given``: ``harness.experiments.FIGURES``)."""
    label = x if x != "share memorized" else f"share scoring >= {FZ20_HIGH_INFLUENCE}"
    name = (f"Pearson r({label}, test accuracy)" if given is None
            else f"partial Pearson r({label}, test accuracy | {given})")
    models = max(len(item[1]) for item in measured)
    return Statistic.from_interval(name + suffix, correlation_across_configurations(measured, seed, x=x, given=given),
                                   unit="configurations", note=NOTE if given is None else PARTIAL_NOTE,
                                   models_per_arm={"models per configuration": models})


def decide(measured: list, seed: int = 0) -> Decision:
    """From one ``(MemorizationScores, per-model test accuracies, per-model training accuracies)``
    triple per configuration."""
    parts = [correlation(measured, seed, x, given) for x, given in PARTS]
    scores = [item[0] for item in measured]
    accuracies = controls.shuffled([item[1:] for item in measured], seed)
    shuffled = [(score, *accuracy) for score, accuracy in zip(scores, accuracies)]
    control = [correlation(shuffled, seed, x, given, ", accuracies shuffled across configurations")
               for x, given in PARTS]
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
        data = {configuration.data for configuration in self.configurations}
        return f"{len(self.configurations)} configurations" + (f" on {data.pop()}" if len(data) == 1 else "")


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
    ] + [Configuration("mlp", data, mlp) for data in REAL_IMAGES]


def network_configurations(profile, data: str) -> list[Configuration]:
    """MIN_CONFIGURATIONS variants of the pixel MLP on one data set, so that the correlation also
    runs within one data set, as IMN25 varied architectures and training settings on each of its
    three; the plain MLP is the one the grid above trains there (the store shares it)."""
    mlp = profile.mlp
    return [Configuration("mlp", data, mlp), Configuration("mlp, no wd", data, replace(mlp, weight_decay=0.0)),
            Configuration("mlp, 1/4 width", data, replace(mlp, width=mlp.width // 4)),
            Configuration("mlp, +1 layer", data, replace(mlp, depth=mlp.depth + 1)),
            Configuration("mlp, augmented", data, replace(mlp, input_noise=AUGMENTATION_NOISE))]


# The partial correlation's least number of configurations (harness.stats.pearson_with_model_noise:
# its Fisher interval has n - 2 degrees of freedom and its jackknife leaves one out).
MIN_CONFIGURATIONS = 5


def own_configurations(data: str, families: dict) -> list[Configuration]:
    """One configuration per family of one's own (label -> spec of the training path) on the
    registered data set ``data``; a ValueError saying why when there are too few to correlate."""
    if len(families) < MIN_CONFIGURATIONS:
        raise ValueError(f"{CLAIM} correlates memorization with test accuracy across configurations: give at least "
                         f"{MIN_CONFIGURATIONS} families on {data} (variants of your model or training: widths, depths, "
                         f"weight decay, epochs, optimizers), got {len(families)}; the partial correlation the claim "
                         f"is decided on needs {MIN_CONFIGURATIONS} configurations")
    return [Configuration(label, data, spec) for label, spec in families.items()]


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


def on_this_machine(configurations, profile) -> tuple[list, list]:
    """The configurations whose data are on this machine, and the names of those that are not."""
    present, absent = [], []
    for configuration in configurations:
        try:
            load_dataset(configuration.data, profile.name)
            present.append(configuration)
        except DatasetNotFound:
            absent.append(f"{configuration.label} on {configuration.data}")
    return present, absent


def study(case: Grid, profile, store, device, seed: int = 0) -> CaseReport:
    models = profile.models_per_configuration
    present, absent = on_this_machine(case.configurations, profile)
    if len(present) < MIN_CONFIGURATIONS:
        import pytest

        pytest.skip(f"{case.id}: {len(present)} configurations have their data on this machine, the correlation "
                    f"needs {MIN_CONFIGURATIONS}; missing: {', '.join(absent)}")
    rows, measured = zip(*(measure(c, models, profile, store, device, seed) for c in present))
    table = pd.DataFrame(list(rows))
    memorization, accuracy = table["mean memorization"], table["test accuracy"]
    gap, high = table["generalization gap"], table[f"share >= {HIGH_SCORE}"]

    by_configuration = [(scores, ensemble.test_accuracy(), ensemble.train_accuracy()) for scores, ensemble in measured]
    decision = decide(by_configuration, seed)
    raw, beyond_mean = decision.parts
    further = [
        across_configurations("Pearson r(mean memorization, test accuracy), bootstrap",
                    stats.bootstrap_correlation(memorization, accuracy, "pearson")),
        across_configurations("Spearman r(mean memorization, test accuracy)", stats.spearman(memorization, accuracy)),
        across_configurations("Spearman r(mean memorization, test accuracy), bootstrap",
                    stats.bootstrap_correlation(memorization, accuracy, "spearman")),
        across_configurations(f"Pearson r(share >= {HIGH_SCORE}, test accuracy)", stats.pearson(high, accuracy)),
        across_configurations(f"Spearman r(share >= {HIGH_SCORE}, test accuracy)", stats.spearman(high, accuracy)),
    ]
    with_gap = across_configurations("Pearson r(mean memorization, generalization gap)", stats.pearson(memorization, gap),
                           note="the identity: mean memorization ~ training accuracy - test accuracy")
    predicted = across_configurations("Pearson r(generalization gap, test accuracy)", stats.pearson(gap, accuracy),
                            note="the correlation the identity alone predicts")
    partial = correlation(by_configuration, seed, given="training accuracy")
    given_gap = correlation(by_configuration, seed, given="generalization gap")
    further += [*decision.parts, with_gap, predicted, partial, given_gap]
    difference = stats.bootstrap_mean((memorization - gap).to_numpy())
    further.append(Statistic.from_interval("mean memorization minus generalization gap", difference,
                                           unit="configurations", note="0 when the identity holds exactly"))
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=", ".join(sorted({c.data for c in present})),
        decisive=decision.decisive, threshold=decision.threshold, statistics=further, control=decision.control,
        paper=PAPER,
        models_trained=int(table["models"].sum()),
        notes=[f"{len(table)} configurations, one subsampled ensemble each (r = {FZ20_RATE}, k = {models})"
               + (f"; left out, their data not on this machine: {', '.join(absent)}" if absent else ""),
               f"mean memorization is the mean over points of P_in - P_out, and P_in ~ training accuracy, P_out ~ "
               f"accuracy on unseen points, so mean memorization ~ the generalization gap: the gap explains "
               f"{with_gap.estimate ** 2:.1%} of the variance of mean memorization across configurations, "
               f"the gap alone "
               f"correlates with test accuracy at {predicted.estimate:.3f} (memorization: {raw.estimate:.3f}), "
               f"and given training accuracy the partial correlation is {partial.estimate:.3f}; a negative "
               f"correlation is what the identity predicts whenever training accuracy varies less than test "
               f"accuracy, whatever the models memorize, so the decision also asks whether memorizing more "
               f"points goes with lower test accuracy at the same mean: {beyond_mean.estimate:.3f} "
               f"[{beyond_mean.lower:.3f}, {beyond_mean.upper:.3f}]",
               f"given the generalization gap the partial correlation is {given_gap.estimate:.3f}, not a test of "
               f"the claim: mean memorization minus the gap is test accuracy minus held-out accuracy, so at a "
               f"fixed gap it rises with test accuracy wherever the test split is drawn unlike the training set",
               f"mean memorization minus the gap averages {difference.estimate:.3f}: P_out is accuracy on held-out "
               f"training points, drawn like the training set, while "
               + ("the synthetic test splits over-weight small sub-populations (at least 2 test points each, "
                  "singletons included), where accuracy is lowest" if any(c.data.startswith("synthetic") for c in present)
                  else "a test split drawn unlike the training set moves the test accuracy away from it"),
               f"training accuracy ranges {table['training accuracy'].min():.3f} to "
               f"{table['training accuracy'].max():.3f}, test accuracy {accuracy.min():.3f} to {accuracy.max():.3f}"],
    )
    figures = {"memorization-vs-test-accuracy": plots.scatter_with_fit(
                   accuracy, memorization, "test accuracy (mean over models)", "mean memorization score (r = 0.7)",
                   f"{case.id}: memorization vs generalization", labels=table["configuration"]),
               "memorization-vs-gap": plots.scatter_with_fit(
                   gap, memorization, "training accuracy - test accuracy", "mean memorization score",
                   f"{case.id}: memorization vs generalization gap", labels=table["configuration"])}
    return CaseReport(result, figures, {"configurations": table.round(4)})


def across_configurations(name: str, interval, note: str = "") -> Statistic:
    return Statistic.from_interval(name, interval, unit="configurations", note=note or interval.method)
