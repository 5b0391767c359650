"""The benchmark's arithmetic and its command line (a --quick run of seconds: its figures
are noise on a shared machine, so only their presence and sanity are checked)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.train import RidgeSpec

from harness import bench


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """--threads sets torch's thread count for the whole process: put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_ridge_floor_counts_gram_cholesky_and_cosines_by_hand():
    # Per model: 10 x 4^2 + 4^3 / 3 = 181.33 FLOPs at 1,000 FLOP/s, and 20 x 4 cosines at 100/s.
    assert bench.ridge_floor_seconds(2, 10, 20, 4, peak=1e3, cosines_per_second=1e2) == pytest.approx(
        2 * (181.3333 / 1e3 + 80 / 1e2), rel=1e-4)


def test_ridge_flops_by_hand():
    # D = 4 features, C = 2 classes, d = 3 inputs, N = 10 + 5 points; models with m = 6 and 8.
    dataset = SimpleNamespace(n_train=10, n_test=5, num_classes=2, x_train=torch.zeros(10, 3))
    plan = SimpleNamespace(n_models=2, masks=np.array([[True] * 6 + [False] * 4, [True] * 8 + [False] * 2]))
    per_model = 2 * 15 * 4 * 4 + 4**3 / 3 + 2 * 4**2 * 2 + 2 * 15 * 4 * 2   # features, Cholesky, solve, predict
    in_mask = (6 * 4**2 + 2 * 6 * 4 * 2) + (8 * 4**2 + 2 * 8 * 4 * 2)        # Gram and moment
    assert bench.ridge_flops(RidgeSpec(features=4), dataset, plan) == pytest.approx(2 * per_model + in_mask)


def test_a_quick_run_prints_every_figure_as_json(capsys):
    bench.main(["--quick", "--json", "--threads", "1"])
    figures = json.loads(capsys.readouterr().out)
    for name in ("matmul_peak_flops", "mlp_ensemble_speedup", "mlp_ensemble_mfu", "ridge_exact_loo_seconds",
                 "ridge_subsampled_seconds", "ridge_subsampled_floor_seconds", "peak_memory_mb",
                 "mlp_width_64_mfu", "mlp_width_256_models_per_second", "ridge_features_1024_mfu"):
        assert figures[name] > 0, name
    assert figures["mlp_accuracies_agree"] is True
    assert "ridge_subsampled_2000_seconds" not in figures  # only a 2,000-model run reports it
    for model in bench.CONV_MODELS:
        for path in bench.CONV_PATHS:
            for k in (4, 8):
                assert figures[f"conv_{model}_{path}_k{k}_models_per_second"] > 0
            assert figures[f"conv_{model}_{path}_models_per_second"] > 0
        assert figures[f"conv_{model}_stacked_over_vmap"] > 0
        assert len(figures[f"conv_{model}_stacked_over_vmap_rounds"]) == 1
    assert "conv_vgg6_stacked_k4_peak_memory_mb" not in figures  # CUDA only
    # A CPU compiles only when asked (--compile): inductor's C++ code generation takes minutes.
    assert figures["conv_stacked_compiled_skipped"] == bench.COMPILE_SKIPPED_ON_CPU
    assert not any(name.startswith("conv_small_cnn_stacked_compiled") for name in figures)


def test_the_compiled_stacked_path_is_timed_without_recompiles():
    # aot_eager generates no code: the plumbing in seconds; inductor's figures come from CUDA.
    figures = bench.conv_figures("cpu", ks=(4,), quick=True, repeats=1, paths=("stacked",), models=("small_cnn",),
                                 compile_backend="aot_eager")
    assert "conv_stacked_compiled_skipped" not in figures
    assert figures["conv_small_cnn_stacked_compiled_backend"] == "aot_eager"
    assert figures["conv_small_cnn_stacked_compiled_k"] == 4   # K = 8 is not timed here: the largest K
    assert figures["conv_small_cnn_stacked_compiled_k4_models_per_second"] > 0
    assert figures["conv_small_cnn_stacked_compiled_first_pass_seconds"] > 0
    assert figures["conv_small_cnn_stacked_compiled_first_pass_graphs_compiled"] in (0, 1)  # 0: compiled before
    assert figures["conv_small_cnn_stacked_compiled_recompiles"] == 0
    assert figures["conv_small_cnn_compiled_over_stacked"] > 0
    assert bench.conv_compile_backend(torch.device("cpu")) is None
    assert bench.conv_compile_backend(torch.device("cuda")) == "inductor"


def test_conv_figures_estimate_paper_models_per_hour_from_the_step_time():
    # 100 epochs x ceil(0.7 x 50,000 / 512) = 6,900 steps a model: 16 models at 69 ms a step
    # take 476 s, 121 an hour.
    assert bench.PAPER_STEPS_PER_MODEL == 6900
    assert bench.paper_models_per_hour(16, 0.069) == pytest.approx(16 * 3600 / (0.069 * 6900))
    assert bench.paper_models_per_hour(16, 0.069) == pytest.approx(120.98, abs=0.01)
    assert bench.conv_dataset(8, 16).x_train.shape == (16, 3, 8, 8)


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--quick", "--loop-models", "11"], "the plain loop is timed on 1 to 10"),
], ids=["zero repeats", "zero threads", "more loop models than the ensemble has"])
def test_bad_arguments_stop_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
