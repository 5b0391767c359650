"""A claim on one's own data and model: ``run(claim, dataset, family, ...) -> ClaimResult``."""


def verdict_line(result) -> str:
    """One line per case: ``claim/case on data: VERDICT, decisive statistic (the threshold)``."""
    return (f"{result.key} on {result.dataset}: {result.verdict.upper()}, {result.decisive} "
            f"(the claim holds {result.threshold})")
