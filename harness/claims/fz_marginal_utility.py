"""fz-marginal-utility (FZ20, as its authors state it): removing the training points with
memorization score >= theta lowers test accuracy more than removing as many random points.

R = {i : mem(i) >= 0.25} (FZ20's high-influence cut) and a random set of |R| points, its own
draw for each model (``harness.removal``). M models per arm, model k of every arm sharing its
seed, so the decisive statistic is a paired difference:

    drop(R) - drop(random) = mean_k acc(h_k^{S \\ random}) - mean_k acc(h_k^{S \\ R}) > 0,

with a crossed bootstrap over model indices (all arms together; the random arm's sets are
redrawn with its models) and the test points by sub-population; the sign is FZ20's claim.
FZ20 report 2.54 +- 0.20 % on CIFAR-100 (as IMN25 quotes it); it is shown beside the drops but
not used as a threshold, since a synthetic set's drop has no reason to match CIFAR-100's size.

Negative control: the same paired difference with a second random set of the same count (its
own draw for each model) in place of the memorized set.

The study (:func:`study`): memorization scores from FZ20's subsampled estimator at the case's
rate or, for the ridge family without a rate, exact leave-one-out in closed form; then the
removal arms ``ARMS``, ``removal_models`` models each.
"""

from __future__ import annotations

from harness import plots
from harness.experiments import describe_scores, load_or_skip, selection_scores
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.removal import CONTROL_ARM, removal_experiment
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Threshold, undecidable

CLAIM = "fz-marginal-utility"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
THRESHOLD = Threshold(0.0, "above", "FZ20: removing memorized points costs more accuracy than removing as many "
                                    "random points (the sign is the claim)")
CONTROL = "the memorization scores: a second random set of the same count in place of the memorized one"
ARMS = ("memorized", "random", CONTROL_ARM)
NAME = "drop(memorized) minus drop(random)"
PAPER = {"figure": "2.54 +- 0.20 % drop (CIFAR-100)", "source": "FZ20, as quoted in IMN25 3.3"}


def decide(utility) -> Decision:
    """From a removal experiment with the arms ``ARMS`` (``harness.removal.removal_experiment``)."""
    if utility.arm("memorized").count == 0:
        missing = undecidable(NAME, f"no point has a score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    decisive = utility.statistic(NAME, utility.drop_difference("memorized", "random"),
                                 note="FZ20 CIFAR-100: 2.54 +- 0.20 % (marginal utility, as IMN25 3.3 quotes it)")
    control = utility.statistic("drop(second random set) minus drop(random)",
                                utility.drop_difference(CONTROL_ARM, "random"))
    drops = [utility.statistic("accuracy drop, memorized points removed", utility.drop("memorized"),
                               "FZ20 CIFAR-100: 2.54 +- 0.20 %"),
             utility.statistic("accuracy drop, random points removed", utility.drop("random"))]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), drops)


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    spec = case.spec(profile)
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate)
    utility = removal_experiment(data, spec, scores, MEMORIZATION_THRESHOLD, profile.removal_models, store, device,
                                 seed, arms=ARMS)
    decision = decide(utility)
    count = utility.arm("memorized").count
    result = ClaimResult.from_decision(
        decision, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=score_models + utility.models,
        notes=[f"{describe_scores(case.rate, score_models)}; {count} of {data.n_train} points "
               f"({count / data.n_train:.1%}) with score >= {MEMORIZATION_THRESHOLD}; {profile.removal_models} models "
               "per arm; accuracies as fractions (0.01 = 1 point)"])
    drops = decision.parts
    figure = plots.interval_bars(["memorized removed", "random removed"], [s.estimate for s in drops],
                                 [s.lower for s in drops], [s.upper for s in drops], "test accuracy drop",
                                 f"{case.id}: marginal utility")
    return CaseReport(result, {"drops": figure}, {"arms": utility.to_dataframe().round(4)})
