"""The claims that do not take the suite's usual case, on one's own data and model
(harness.runner): sampling-rate-bias budgets a family of one's own like the suite's MLP and
says so; mem-gen-anticorrelated correlates across a list of one's own families, and refuses
fewer than it needs with the reason; both from Python and from the command line."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
from torch import nn

from harness import cli
from harness.claims.mem_gen_anticorrelated import MIN_CONFIGURATIONS
from harness.data import SubpopulationSpec, from_arrays, synthetic
from harness.model_family import ModelFamily
from harness.profiles import OWN_FAMILY_RATE_BUDGET, SMOKE
from harness.runner import run
from harness.specs import ConvSpec, Recipe

# The smoke profile, smaller still: k = 40 resolves r = 0.5 and 0.7 at the MLP's budget, not 0.9.
TINY = replace(SMOKE, name="smoke", subsampled_models=40, loo_targets_per_bin=3, loo_models_per_target=4,
               sampling_rates=(0.5, 0.7, 0.9), models_per_configuration=12)
FEW_EPOCHS = Recipe("few", epochs=3, batch_size=32, peak_lr=0.1)


@pytest.fixture(scope="module")
def features():
    data = synthetic(SubpopulationSpec(num_classes=3, dim=8, subpops_per_class=4, largest=12, singletons_per_class=2))
    return from_arrays(data.x_train, data.y_train, data.x_test, data.y_test, name="my-features",
                       group_train=data.group_train, group_test=data.group_test)


def mlp_of_width(width):
    def mlp(num_classes, input_shape):
        return nn.Sequential(nn.Linear(input_shape[0], width), nn.ReLU(), nn.Linear(width, num_classes))

    return mlp


def family(width=16, epochs=3, **options):
    return ModelFamily(mlp_of_width(width), 3, (8,), recipe=replace(FEW_EPOCHS, epochs=epochs),
                       name=f"mlp-{width}-{epochs}", models_per_pass=40, **options)


def test_sampling_rate_bias_budgets_ones_own_family_like_the_suites_mlp_and_says_so(features, tmp_path):
    result = run("sampling-rate-bias", features, family(), profile=TINY, store=tmp_path, device="cpu")
    assert result.verdict in ("supported", "refuted", "inconclusive")
    assert any(f"mlp-16-3 is a family of one's own: at most {OWN_FAMILY_RATE_BUDGET * 40} models a rate" in note
               for note in result.notes)
    assert any(note.startswith("rates [0.9] unresolvable at this budget") for note in result.notes)


def test_sampling_rate_bias_refuses_a_suite_family_without_a_budget(features, tmp_path):
    with pytest.raises(ValueError, match="the suite's cnn family has no budget there"):
        run("sampling-rate-bias", features, ConvSpec(), profile=TINY, store=tmp_path, device="cpu")


GRID = [family(4), family(16), family(64), family(16, epochs=1), family(64, epochs=8)]


def test_mem_gen_anticorrelated_correlates_across_ones_own_families(features, tmp_path):
    result = run("mem-gen-anticorrelated", features, GRID, profile=TINY, store=tmp_path, device="cpu",
                 reports_dir=tmp_path / "reports")
    assert result.case == "5 configurations on my-features" and result.dataset == "my-features"
    assert result.models_trained == 5 * TINY.models_per_configuration
    assert "Pearson r(" in result.decisive.name and "test accuracy" in result.decisive.name   # either part
    assert any("a test split drawn unlike the training set" in note for note in result.notes)
    assert (tmp_path / "reports" / "mem-gen-anticorrelated").is_dir()


@pytest.mark.parametrize("claim, families, words", [
    ("mem-gen-anticorrelated", lambda: family(), f"give at least {MIN_CONFIGURATIONS} families on my-features"),
    ("mem-gen-anticorrelated", lambda: GRID[:2], "got 2; the partial correlation"),
    ("mem-gen-anticorrelated", lambda: [family(16)] * 5, "mlp-16-3 named more than once"),
    ("fz-long-tail", lambda: GRID, "fz-long-tail takes one family, got a list of 5"),
], ids=["one family", "too few families", "families of one name", "a list for a claim of one family"])
def test_what_a_claim_cannot_correlate_is_refused_with_the_reason(features, tmp_path, claim, families, words):
    with pytest.raises(ValueError, match=None) as refused:
        run(claim, features, families(), profile=TINY, store=tmp_path, device="cpu")
    assert words in str(refused.value)


GRID_MODULE = '''
import torch
from torch import nn

from harness.model_family import ModelFamily, OwnOptimizer


def make_model(num_classes, input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 8), nn.ReLU(), nn.Linear(8, num_classes))


def wide_model(num_classes, input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 32), nn.ReLU(), nn.Linear(32, num_classes))


with_adam = ModelFamily(make_model, 3, (8,), name="adam", recipe=OwnOptimizer(
    lambda params: torch.optim.Adam(params, lr=0.01), epochs=4, batch_size=32))
CONFIGURATIONS = [make_model, wide_model, with_adam, "mlp", "ridge"]
TOO_FEW = CONFIGURATIONS[:4]
'''


def test_verify_takes_a_list_of_families_for_mem_gen_anticorrelated(features, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_grid.py").write_text(GRID_MODULE)
    np.savez(tmp_path / "mine.npz", x_train=features.x_train.numpy(), y_train=features.y_train.numpy(),
             x_test=features.x_test.numpy(), y_test=features.y_test.numpy(), group_train=features.group_train,
             group_test=features.group_test)
    monkeypatch.chdir(tmp_path)
    arguments = ["verify", "mem-gen-anticorrelated", "--data", "mine.npz", "--profile", "smoke",
                 "--store", str(tmp_path / "store"), "--device", "cpu"]
    try:
        assert cli.main([*arguments, "--model", "my_grid:TOO_FEW"]) == 2
        assert "got 4; the partial correlation" in capsys.readouterr().err
        status = cli.main([*arguments, "--model", "my_grid:CONFIGURATIONS"])
    finally:
        sys.modules.pop("my_grid", None)
    out = capsys.readouterr().out.splitlines()
    assert status in cli.EXIT_STATUS.values() and out[0].startswith("mem-gen-anticorrelated/5 configurations on mine: ")
    assert any("5 run(s) trained" in line for line in out)
    assert (tmp_path / "reports" / "mem-gen-anticorrelated").is_dir()


def test_a_case_takes_a_suite_family_by_name_or_a_family_of_ones_own():
    from harness.experiments import Case

    own = family()
    assert Case("my-features", own, 0.7).spec(TINY) is own
    assert Case("my-features", own, 0.7).id == "mlp-16-3 on my-features at r=0.7"
    assert Case("synthetic", "ridge").spec(TINY) is TINY.ridge and Case("synthetic", "ridge").family == "ridge"
    assert Case("mnist", "mlp").on_real_images and not Case("synthetic", "mlp").on_real_images
    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        Case("synthetic", "svm").spec(TINY)


def test_a_family_of_ones_own_named_ridge_takes_the_loo_plan_not_the_closed_form(features, tmp_path):
    from harness.experiments import loo_scores, scores_loo_in_closed_form
    from harness.store import Store

    named_ridge = ModelFamily(mlp_of_width(8), 3, (8,), recipe=replace(FEW_EPOCHS, epochs=1), name="ridge")
    assert scores_loo_in_closed_form(TINY.ridge) and not scores_loo_in_closed_form(named_ridge)
    scores, ensemble = loo_scores(features, named_ridge, TINY, Store(tmp_path))
    assert "loo_margin" not in ensemble.arrays and (ensemble.plan.left_out >= 0).any()
    assert len(scores.points) <= 3 * TINY.loo_targets_per_bin
