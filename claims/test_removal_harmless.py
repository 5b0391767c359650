"""removal-harmless (IMN26): removing the truly memorized points does not lower test accuracy,
and often raises it.

Per case, exact LOO scores of the singletons and mislabeled points (the ridge family in closed
form, the MLP with a LOO plan over them), so that *truly memorized* (defined in
``harness.claims.removal_harmless``) does not inherit the subsampled estimator's bias. The removal arms, the decision (a non-inferiority test of each part's drop, mislabeled and
singletons, by intersection-union) and its negative control are
``harness.claims.removal_harmless``. Also reported: the drop from removing both parts together,
the accuracy change (after minus before: IMN26 says it often rises), and the drop on the test
points of purged sub-populations.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import plots
from harness.claims.removal_harmless import CLAIM, CONTROL_ARM, MEMORIZATION_THRESHOLD, WHOLE, decide, removal_arms
from harness.experiments import Case, load_dataset
from harness.removal import (
    describe_scores,
    marginal_utility,
    select_above,
    selection_scores,
)
from harness.verdict import ClaimResult


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic-noisy", "ridge")]
    return [Case(data, "ridge") for data in ("synthetic", "synthetic-noisy", "synthetic-steep")] + \
        [Case(data, "mlp") for data in ("synthetic", "synthetic-noisy")]


@pytest.mark.claim(CLAIM)
def test_removing_truly_memorized_points_does_not_lower_accuracy(case, profile, store, device, seed, conclude):
    data = load_dataset(case.data, profile.name)
    spec = case.spec(profile)
    singleton = data.group_size_train == 1
    mislabeled = (data.mislabeled_train if data.mislabeled_train is not None
                  else np.zeros(data.n_train, dtype=bool))
    candidates = np.flatnonzero(singleton | mislabeled)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate,
                                            targets=candidates)
    memorized = select_above(scores, MEMORIZATION_THRESHOLD)
    removals = removal_arms(data, memorized, seed)
    models = profile.removal_models
    utility = marginal_utility(data, spec, removals, models, store, device, seed) if removals else None
    decision = decide(utility)
    further = []
    if utility is not None:
        further = [utility.statistic("accuracy drop, truly memorized points removed", utility.drop(WHOLE),
                                     "IMN26: no drop"),
                   utility.statistic("accuracy change after removal (after minus before)",
                                     utility.bootstrap(lambda r: {"change": -utility.resampled_drop(r, WHOLE)})["change"],
                                     "IMN26: often rises (> 0)")]
        purged = utility.purged_test_points(WHOLE)
        if purged.any():
            further.append(utility.statistic("accuracy drop on test points of purged sub-populations",
                                             utility.drop(WHOLE, purged),
                                             "sub-populations whose every training point was removed"))
    counts = {part: int(chosen.sum()) for part, chosen in removals.items() if part != CONTROL_ARM}
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=decision.parts + further, control=decision.control,
        paper={"figure": "removing truly memorized points does not cause a drop in accuracy, and in most "
                         "cases improves test performance", "source": "IMN26 abstract"},
        models_trained=score_models + (utility.models if utility is not None else 0),
        notes=[f"{describe_scores(case.rate, score_models)}; {int(singleton.sum())} singletons and "
               f"{int(mislabeled.sum())} mislabeled points; removed (score >= {MEMORIZATION_THRESHOLD}): {counts}; "
               f"{models} models per arm; accuracies as fractions (0.01 = 1 point)"],
    )
    figures, tables = {}, {}
    if utility is not None:
        drops = [s for s in decision.parts + further if s.name.startswith("accuracy drop")] + \
            [decision.control.statistic]
        figures = {"drops": plots.interval_bars([s.name.replace("accuracy drop, ", "") for s in drops],
                                                [s.estimate for s in drops], [s.lower for s in drops],
                                                [s.upper for s in drops], "test accuracy drop",
                                                f"{case.id}: removing truly memorized points")}
        tables = {"arms": utility.to_dataframe().round(4)}
    conclude(result, figures=figures, tables=tables)
