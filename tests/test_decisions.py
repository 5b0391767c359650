"""Every claim's decision on tables whose truth is known (``harness.claims``; no training).

Each claim gets a table where the claim holds (supported, with its negative control not
supported), one where it is false (refuted) and one that straddles its threshold
(inconclusive). Run them with ``pytest tests/ -k decision``.
"""

from __future__ import annotations

import pytest

import tables
from harness.claims import approx_overestimates, error_is_subpopulation
from harness.verdict import INCONCLUSIVE, REFUTED, SUPPORTED


def check(decision, expected: str) -> None:
    assert decision.verdict == expected, f"{decision.decisive}"
    if expected == SUPPORTED:
        assert decision.control_verdict != SUPPORTED, f"control {decision.control.statistic}"


@pytest.mark.parametrize("error_by_bin, expected", [
    ({"singleton": 0.0, "small": 0.3, "large": 0.0}, SUPPORTED),
    ({"singleton": 0.0, "small": -0.3, "large": 0.0}, REFUTED),
    ({"singleton": 0.3, "small": 0.3, "large": 0.0}, INCONCLUSIVE),
], ids=["decision of approx-overestimates: small sub-populations overestimated alone is supported",
        "decision of approx-overestimates: small sub-populations underestimated is refuted",
        "decision of approx-overestimates: singletons overestimated as much as small ones is inconclusive"])
def test_approx_overestimates(error_by_bin, expected):
    check(approx_overestimates.decide(tables.approximation_study(error_by_bin)), expected)


@pytest.mark.parametrize("error_by_bin, expected", [
    ({"singleton": 0.0, "small": 0.3, "large": 0.15}, SUPPORTED),
    ({"singleton": 0.3, "small": 0.0, "large": 0.15}, REFUTED),
    ({"singleton": 0.1, "small": 0.1, "large": 0.1}, INCONCLUSIVE),
], ids=["decision of error-is-subpopulation: small sub-populations err most and singletons least is supported",
        "decision of error-is-subpopulation: singletons err most and small sub-populations least is refuted",
        "decision of error-is-subpopulation: every bin erring alike is inconclusive"])
def test_error_is_subpopulation(error_by_bin, expected):
    study = tables.approximation_study(error_by_bin, loo_models=200, subsampled_models=400)
    check(error_is_subpopulation.decide(study), expected)
