"""mem-gen-anticorrelated (IMN25 5): across models, data sets and training settings,
memorization and test accuracy are strongly negatively correlated.

Per configuration (a data set and a model: MLP width and depth, with and without weight
decay, with and without augmentation (Gaussian input noise, ``MLPSpec.input_noise``), and
the random-feature ridge family at several feature counts and ridge strengths), one
subsampled ensemble (r = 0.7, FZ20's estimator, as IMN25 used) gives the test accuracy, the
training accuracy (means over models), the mean memorization score over the training points
and the share of points scoring >= 0.25. The decision (the raw correlation and the partial
correlation given the generalization gap, both below 0; the models' noise in their intervals)
and its negative control are ``harness.claims.mem_gen_anticorrelated``.

Why the gap is held fixed. Each point is in the same number of models of a balanced plan, so
the mean of P_in over points is the models' accuracy on their own training points, and P_out
is accuracy on points the model has not seen, drawn like the test set:

    mean memorization = mean_i (P_in(i) - P_out(i)) ~ training accuracy - test accuracy,

the generalization gap. Where every model fits its training set, mean memorization is about
1 - test accuracy whatever the models memorize. The report gives the gap next to the
memorization of each configuration, the correlation of the two, the correlation the identity
alone predicts (gap vs test accuracy) and, beside the decision, the partial correlation given
training accuracy.
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness import plots, stats
from harness.claims.mem_gen_anticorrelated import CLAIM, HIGH_SCORE, Grid, configurations, correlation, decide, measure
from harness.profiles import FZ20_RATE
from harness.verdict import ClaimResult, Statistic


def cases(profile):
    return [Grid(tuple(configurations(profile)))]


def across_configurations(name: str, interval, note: str = "") -> Statistic:
    return Statistic.from_interval(name, interval, unit="configurations", note=note or interval.method)


@pytest.mark.claim(CLAIM)
def test_memorization_and_test_accuracy_are_negatively_correlated(case, profile, store, device, seed, conclude):
    models = profile.models_per_configuration
    rows, measured = zip(*(measure(c, models, profile, store, device, seed) for c in case.configurations))
    table = pd.DataFrame(list(rows))
    memorization, accuracy = table["mean memorization"], table["test accuracy"]
    gap, high = table["generalization gap"], table[f"share >= {HIGH_SCORE}"]

    by_configuration = [(scores, ensemble.test_accuracy(), ensemble.train_accuracy()) for scores, ensemble in measured]
    decision = decide(by_configuration, seed)
    raw, beyond_gap = decision.parts
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
    further += [*decision.parts, with_gap, predicted, partial]
    difference = stats.bootstrap_mean((memorization - gap).to_numpy())
    further.append(Statistic.from_interval("mean memorization minus generalization gap", difference,
                                           unit="configurations", note="0 when the identity holds exactly"))
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=", ".join(sorted({c.data for c in case.configurations})),
        decisive=decision.decisive, threshold=decision.threshold, statistics=further, control=decision.control,
        paper={"figure": "Pearson -0.997 over 19 configurations (the text also prints 0.997)",
               "source": "IMN25 5 (VGG, ResNet, ViT on CIFAR-10/100 and Tiny ImageNet, with and without weight "
                         "decay and augmentation)"},
        models_trained=int(table["models"].sum()),
        notes=[f"{len(table)} configurations, one subsampled ensemble each (r = {FZ20_RATE}, k = {models})",
               f"mean memorization is the mean over points of P_in - P_out, and P_in ~ training accuracy, P_out ~ "
               f"accuracy on unseen points, so mean memorization ~ the generalization gap: the gap explains "
               f"{with_gap.estimate ** 2:.1%} of the variance of mean memorization across configurations, "
               f"the gap alone "
               f"correlates with test accuracy at {predicted.estimate:.3f} (memorization: {raw.estimate:.3f}), "
               f"and given training accuracy the partial correlation is {partial.estimate:.3f}; a negative "
               f"correlation is what the identity predicts whenever training accuracy varies less than test "
               f"accuracy, whatever the models memorize, so the decision also asks for it beyond the gap: "
               f"{beyond_gap.estimate:.3f} [{beyond_gap.lower:.3f}, {beyond_gap.upper:.3f}]",
               f"mean memorization minus the gap averages {difference.estimate:.3f}: P_out is accuracy on held-out "
               f"training points, drawn like the training set, while the synthetic test splits over-weight small "
               f"sub-populations (at least 2 test points each, singletons included), where accuracy is lowest",
               f"training accuracy ranges {table['training accuracy'].min():.3f} to "
               f"{table['training accuracy'].max():.3f}, test accuracy {accuracy.min():.3f} to {accuracy.max():.3f}"],
    )
    conclude(result,
             figures={"memorization-vs-test-accuracy": plots.scatter_with_fit(
                          accuracy, memorization, "test accuracy (mean over models)",
                          "mean memorization score (r = 0.7)", f"{case.id}: memorization vs generalization",
                          labels=table["configuration"]),
                      "memorization-vs-gap": plots.scatter_with_fit(
                          gap, memorization, "training accuracy - test accuracy", "mean memorization score",
                          f"{case.id}: memorization vs generalization gap", labels=table["configuration"])},
             tables={"configurations": table.round(4)})
