"""mem-gen-anticorrelated (IMN25 5): across models, data sets and training settings,
memorization and test accuracy are strongly negatively correlated.

Per configuration (a data set and a model: MLP width and depth, with and without weight
decay, with and without augmentation (Gaussian input noise, ``MLPSpec.input_noise``), and
the random-feature ridge family at several feature counts and ridge strengths), one
subsampled ensemble (r = 0.7, FZ20's estimator, as IMN25 used) gives the test accuracy, the
training accuracy (means over models), the mean memorization score over the training points
and the share of points scoring >= 0.25. The decision (the raw correlation and the partial
correlation given the generalization gap, both below 0; the models' noise in their intervals)
and its negative control, and the study, are ``harness.claims.mem_gen_anticorrelated``.

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

import pytest

from harness.claims.mem_gen_anticorrelated import CLAIM, Grid, configurations, network_configurations, study
from harness.experiments import REAL_IMAGES


def cases(profile):
    # Beside the grid across data sets, the pixel MLP's variants within each real image set.
    within = [Grid(tuple(network_configurations(profile, data))) for data in REAL_IMAGES] if profile.name != "smoke" else []
    return [Grid(tuple(configurations(profile)))] + within


@pytest.mark.claim(CLAIM)
def test_memorization_and_test_accuracy_are_negatively_correlated(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
