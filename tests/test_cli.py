"""``python -m harness``: list the claims, verify one on one's own data and model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import cli
from harness.data import SubpopulationSpec, synthetic
from harness.runner import CLAIMS


def test_list_prints_every_claim_with_its_sentence(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(CLAIMS)
    assert any(line.startswith("fz-long-tail") and "high-memorization points are atypical" in line for line in lines)
    assert any("not on one's own data" in line for line in lines if line.startswith("subpopulations-stable"))
    assert any("a list of families, one configuration each" in line for line in lines
               if line.startswith("mem-gen-anticorrelated"))


@pytest.fixture
def small_npz(tmp_path):
    data = synthetic(SubpopulationSpec(num_classes=3, dim=8, subpops_per_class=4, largest=12, singletons_per_class=2))
    path = tmp_path / "small-mine.npz"
    np.savez(path, x_train=data.x_train.numpy(), y_train=data.y_train.numpy(), x_test=data.x_test.numpy(),
             y_test=data.y_test.numpy(), group_train=data.group_train, group_test=data.group_test)
    return path


def test_verify_prints_the_verdict_and_the_store_and_writes_the_report(small_npz, tmp_path, capsys):
    status = cli.main(["verify", "fz-long-tail", "--data", str(small_npz), "--model", "ridge", "--profile", "smoke",
                       "--store", str(tmp_path / "store"), "--reports-dir", str(tmp_path / "reports"),
                       "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    record = json.loads((tmp_path / "reports" / "fz-long-tail" / "ridge_on_small-mine.json").read_text())
    assert status == cli.EXIT_STATUS[record["verdict"]] or record["control"]["verdict"] == "supported"
    assert out[0].startswith(f"fz-long-tail/ridge on small-mine: {record['verdict'].upper()}, ")
    assert any(line.startswith("store ") and "1 run(s) trained" in line for line in out)

    cli.main(["verify", "fz-long-tail", "--data", str(small_npz), "--model", "ridge", "--profile", "smoke",
              "--store", str(tmp_path / "store"), "--reports-dir", str(tmp_path / "again"), "--device", "cpu"])
    again = capsys.readouterr().out.splitlines()
    assert again[0] == out[0] and any("1 run(s) reused" in line for line in again)


@pytest.mark.parametrize("claim, model, words", [
    ("no-such-claim", "ridge", "unknown claim 'no-such-claim'"),
    ("mem-gen-anticorrelated", "ridge", "give at least 5 families on small-mine"),
    ("subpopulations-stable", "ridge", "does not run on one data set"),
    ("fz-long-tail", "no_such_module:factory", "No module named 'no_such_module'"),
    ("fz-long-tail", "tests.test_cli:no_such_factory", "has no 'no_such_factory'"),
], ids=["an unknown claim is named", "one family where configurations are correlated is refused",
        "a claim of the suite's own data sets is refused",
        "a missing model module is named", "a missing factory is named"])
def test_verify_refuses_what_it_cannot_run_with_a_message(small_npz, tmp_path, capsys, claim, model, words):
    status = cli.main(["verify", claim, "--data", str(small_npz), "--model", model, "--profile", "smoke",
                       "--store", str(tmp_path / "store")])
    assert status == 2 and words in capsys.readouterr().err
