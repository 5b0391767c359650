"""grouped-leave-out (a harness design claim, not from the papers): grouped leave-out
(:mod:`harness.grouped`) gives the exact leave-one-out scores of its targets, also for
members of small sub-populations, at (G + 1) M models instead of exact LOO's (T + 1) M.

Why it is tested: IMN25's LOO study trains 200 targets x 100 models; grouped leave-out
leaves several mutually compatible targets (no shared sub-population, none within a
distance d of another) out of each model. The subsampled estimator's bias on small
sub-populations comes from leaving a point out together with its mates (IMN25 4.2); the
groups never do that, and this test checks that no such bias comes back.

Per case, on synthetic data with known sub-populations, the grouped estimate and the exact LOO
score of the same targets (ridge: closed form; MLP: approx-overestimates' exact LOO plan). The
study, the decision (intersection-union of two equivalence tests, margin 0.05: the small
sub-populations' mean difference from exact LOO, and every target's per-point root mean square
error with the models' noise removed) and its negative control (FZ20's subsampled estimator in
the grouped design's place) are ``harness.claims.grouped_leave_out``. Reported beside it: the difference per
size bin, the pooled-P_in option, and the cost in models against exact LOO's.
"""

from __future__ import annotations

import pytest

from harness.claims.grouped_leave_out import CLAIM, study
from harness.experiments import REAL_IMAGES, Case


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge")]
    # On MNIST and Fashion-MNIST (sub-populations inferred) the grouped plan adds (G + 1) M MLP
    # models to approx-overestimates' exact LOO, which the store shares: 2 min 54 s of one core for
    # both data sets at the default profile.
    images = [Case(data, "mlp") for data in REAL_IMAGES]
    return [Case("synthetic", "ridge"), Case("synthetic-overlapping", "ridge"), Case("synthetic", "mlp")] + images


@pytest.mark.claim(CLAIM)
def test_grouped_leave_out_matches_exact_loo_on_small_subpopulations(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
