"""error-is-subpopulation (IMN25 4.2): among the points the subsampled estimator flags as
memorized, those with the largest approximation error are members of small
sub-populations, those with the smallest error are outliers (singletons).

Per case, the approx-overestimates study (exact LOO and subsampled scores of the same points,
shared through the store); the decision (two contrasts between the ends of the error ranking)
and its negative control are ``harness.claims.error_is_subpopulation``. The paper's SPP
comparison (0.77 +- 0.26 vs 0.32 +- 0.26) is reported beside it, SPP taken from models that
did not train on the point (an outlier is one the model is unsure of when it has not seen it).

On MNIST and Fashion-MNIST (stratified subsets, sub-populations inferred by clustering learned
features within each class, ``harness.experiments``) the report adds the test images that
nearly duplicate a training image (``harness.duplicates``: normalised pixels, closer than the
0.01 quantile of training nearest-neighbour distances) with a table of their distances: near
copies are the points whose "memorization" a test set cannot tell from generalization.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import image_plots, plots, stats
from harness.claims.error_is_subpopulation import CLAIM, INFLUENCE_CUT, decide, points_per_end
from harness.duplicates import find_near_duplicates
from harness.experiments import Case, approximation_error, load_or_skip, subpopulation_summary
from harness.verdict import ClaimResult, Statistic
from harness.profiles import FZ20_RATE

def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE), Case("digits", "ridge", FZ20_RATE)]
    # Images: the ridge family only (the approx-overestimates study they share, through the store).
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case(data, "ridge", FZ20_RATE) for data in ("mnist", "fashion-mnist")]


@pytest.mark.claim(CLAIM)
def test_largest_errors_fall_on_small_subpopulations(case, profile, store, device, seed, conclude):
    data = load_or_skip(case.data, profile.name)
    study = approximation_error(data, case.spec(profile), case.rate, profile, store, device, seed)
    influential = study.table[study.table["subsampled"] >= INFLUENCE_CUT].copy()
    influential["abs_error"] = influential["error"].abs()
    ranked = influential.sample(frac=1.0, random_state=seed).sort_values("abs_error", kind="stable")
    decision = decide(study, seed)
    k = points_per_end(len(ranked))
    if k < 2:
        conclude(ClaimResult(
            claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
            control=decision.control,
            paper={"figure": "SPP 0.77 vs 0.32 for the 100 highest- and lowest-error points", "source": "IMN25 4.2"},
            models_trained=study.models,
            notes=[f"{len(study.table)} points scored; more LOO targets would decide it"]))
        return
    top, bottom = ranked.tail(k), ranked.head(k)
    spp = []
    for label, rows, paper in (("highest", top, "0.77 +- 0.26"), ("lowest", bottom, "0.32 +- 0.26")):
        spp.append(Statistic.from_interval(f"held-out SPP of the {k} {label}-error points",
                                           stats.bootstrap_mean(rows["spp_out"].to_numpy()),
                                           note=f"IMN25 4.2: {paper} (100 points)"))
    spp.append(Statistic.from_interval("held-out SPP, highest minus lowest error",
                                       stats.bootstrap_difference(top["spp_out"].to_numpy(),
                                                                  bottom["spp_out"].to_numpy()),
                                       note="IMN25 4.2: 0.77 - 0.32 = 0.45"))
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=data.name, decisive=decision.decisive, threshold=decision.threshold,
        statistics=decision.parts + spp, control=decision.control,
        paper={"figure": "SPP 0.77 +- 0.26 for the 100 highest-error points vs 0.32 +- 0.26 for the "
                         "100 lowest-error points", "source": "IMN25 4.2"},
        models_trained=study.models,
        notes=[f"{len(influential)} of {len(study.table)} scored points have subsampled score >= "
               f"{INFLUENCE_CUT}; k = {k} at each end of the |error| ranking",
               f"sub-populations: {subpopulation_summary(data)}"],
    )
    composition = (ranked.assign(end=np.where(ranked.index.isin(top.index), "highest error",
                                              np.where(ranked.index.isin(bottom.index), "lowest error", "middle")))
                   .groupby(["end", "bin"]).size().unstack(fill_value=0))
    figures = {"error-histogram": plots.error_histogram(influential, f"{case.id}: influential points"),
               "spp-by-end": plots.interval_bars(
                   [f"{k} highest error", f"{k} lowest error"], [s.estimate for s in spp[:2]],
                   [s.lower for s in spp[:2]], [s.upper for s in spp[:2]], "held-out SPP",
                   f"{case.id}: SPP at both ends of the error ranking", reference=None)}
    tables = {"sub-population bins at each end": composition}
    if data.is_image:
        duplicates = find_near_duplicates(data)
        result.notes.append(f"near-duplicates (normalised pixels): {duplicates.summary()}")
        figures["near-duplicate pairs"] = image_plots.pair_grid(data, duplicates.pairs)
        tables["near-duplicate test-train pairs"] = duplicates.pairs.round(3)
    conclude(result, figures=figures, tables=tables)
