"""fz-marginal-utility (FZ20, as its authors state it): removing the training points with
memorization score >= theta lowers test accuracy more than removing as many random points.

Per case, memorization scores from FZ20's subsampled estimator (r = 0.7, FZ20's setting) or, for
the ridge family, exact leave-one-out in closed form (case without a rate); the removal arms and
the decision (a paired difference of drops) with its negative control are
``harness.claims.fz_marginal_utility``.
"""

from __future__ import annotations

import pytest

from harness import plots
from harness.claims.fz_marginal_utility import ARMS, CLAIM, MEMORIZATION_THRESHOLD, decide
from harness.experiments import Case, load_dataset
from harness.profiles import FZ20_RATE
from harness.removal import describe_scores, removal_experiment, selection_scores
from harness.verdict import ClaimResult


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE), Case("digits", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case("synthetic", "ridge")]


@pytest.mark.claim(CLAIM)
def test_removing_memorized_points_costs_more_than_removing_random_points(case, profile, store, device, seed,
                                                                          conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    utility = removal_experiment(data, spec, scores, MEMORIZATION_THRESHOLD, profile.removal_models, store, device,
                                 seed, arms=ARMS)
    decision = decide(utility)
    count = utility.arm("memorized").count
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=decision.parts, control=decision.control,
        paper={"figure": "2.54 +- 0.20 % drop (CIFAR-100)", "source": "FZ20, as quoted in IMN25 3.3"},
        models_trained=score_models + utility.models,
        notes=[f"{describe_scores(case.rate, score_models)}; {count} of {data.n_train} points "
               f"({count / data.n_train:.1%}) with score >= {MEMORIZATION_THRESHOLD}; {profile.removal_models} models "
               "per arm; accuracies as fractions (0.01 = 1 point)"],
    )
    drops = decision.parts
    conclude(result,
             figures={"drops": plots.interval_bars(["memorized removed", "random removed"],
                                                   [s.estimate for s in drops], [s.lower for s in drops],
                                                   [s.upper for s in drops], "test accuracy drop",
                                                   f"{case.id}: marginal utility")},
             tables={"arms": utility.to_dataframe().round(4)})
