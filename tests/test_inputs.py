"""Bad input gets a ValueError naming the problem before anything is created on disk (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.data import SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.masks import full_plan
from harness.store import Store
from harness.train import RidgeSpec

DATA = synthetic(SubpopulationSpec(num_classes=2, dim=4, subpops_per_class=2, largest=6, singletons_per_class=1))
SPEC = RidgeSpec(features=16)


def with_nan(split: str, row: int):
    x = (DATA.x_train if split == "training" else DATA.x_test).clone()
    x[row, 0] = float("nan")
    return replace(DATA, **{"x_train" if split == "training" else "x_test": x})


def bad_masks():
    plan = full_plan(DATA.n_train, 3)
    return replace(plan, masks=plan.masks.astype(np.uint8))


@pytest.mark.parametrize("data, spec, plan, seed, message", [
    (with_nan("training", 4), SPEC, full_plan(DATA.n_train, 3), 0, "training point.*row 4"),
    (with_nan("test", 2), SPEC, full_plan(DATA.n_train, 3), 0, "test point.*row 2"),
    (replace(DATA, x_test=DATA.x_test[:0], y_test=DATA.y_test[:0], group_test=DATA.group_test[:0]), SPEC,
     full_plan(DATA.n_train, 3), 0, "test split is empty"),
    (DATA, SPEC, bad_masks(), 0, "2-D bool"),
    (DATA, SPEC, full_plan(DATA.n_train, 3), -1, "non-negative integer"),
    (DATA, SPEC, full_plan(DATA.n_train, 3), 1.5, "non-negative integer"),
    (DATA, replace(SPEC, models_per_pass=0), full_plan(DATA.n_train, 3), 0, "models_per_pass"),
], ids=["NaN in a training row", "NaN in a test row", "an empty test split", "masks that are not bool",
        "a negative seed", "a fractional seed", "no model per pass"])
def test_bad_input_is_refused_before_the_store_is_touched(tmp_path, data, spec, plan, seed, message):
    store = Store(tmp_path / "store")
    with pytest.raises(ValueError, match=message):
        train_ensemble(data, spec, plan, store, seed, progress=False)
    assert not any((tmp_path / "store").rglob("*")), "nothing may be created for a refused input"


def test_an_unknown_profile_from_the_environment_is_a_usage_error(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(root / "claims" / "test_fz_marginal_utility.py"), "--reports-dir", str(tmp_path)],
                         cwd=root, capture_output=True, text=True, env={**os.environ, "MEMSUITE_PROFILE": "foo"})
    assert run.returncode == 4, run.stdout + run.stderr          # pytest's usage-error exit code
    assert "unknown profile 'foo'" in run.stderr and "INTERNALERROR" not in run.stdout + run.stderr
