"""The stacked path's compiled training step (``compile_backend``, ``ConvSpec(compiled=True)``):
the same models as the eager step, no recompiles under a learning-rate schedule, its own store
key. The backends here trace the graphs without generating code (``aot_eager``: AOTAutograd's
forward and backward graphs run by eager kernels), so they take seconds on a CPU; inductor's
generated kernels are measured where a GPU is (``harness.bench.conv_figures``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conv_data import nested_masks, random_images
from harness import specs, zoo
from harness.data import Dataset
from harness.images import DeviceAugment
from harness.worker import spec_from_config

N_TRAIN = 40
# Batches of 8 from masks of up to 40 points: 5 steps an epoch, so 2 epochs are one triangular
# schedule of 10 steps, a different learning rate at each. VGG-6 on random labels turns
# rounding into visible differences at larger rates (tests/test_stacked.py): 0.002 keeps it small.
RECIPES = {"small_cnn": specs.Recipe("compiled-test", epochs=2, batch_size=8, peak_lr=0.05),
           "vgg6": specs.Recipe("compiled-test", epochs=2, batch_size=8, peak_lr=0.002)}
STEPS = 10


@pytest.fixture(scope="module")
def images() -> Dataset:
    return random_images(N_TRAIN, seed=1)


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    return nested_masks(N_TRAIN, (12, 24, 40), seed=1)


def fit(model, images, masks, compile_backend, seeds=(3, 4, 5)):
    return zoo._fit(model, images, masks, list(seeds), RECIPES[model], torch.device("cpu"),
                    DeviceAugment(flip=True, translate=2), progress=False, path="stacked",
                    compile_backend=compile_backend)


@pytest.mark.parametrize("model", ["small_cnn", "vgg6"])
def test_the_compiled_step_trains_the_eager_steps_models(model, images, masks):
    eager, compiled = fit(model, images, masks, None), fit(model, images, masks, "aot_eager")
    assert compiled.setup.total_steps == STEPS
    eager_arrays, compiled_arrays = zoo._evaluate(eager, images), zoo._evaluate(compiled, images)
    for key in ("train_margin", "test_margin", "train_spp", "final_loss"):
        np.testing.assert_allclose(compiled_arrays[key], eager_arrays[key], rtol=0, atol=1e-4, err_msg=key)
    for k, (mine, theirs) in enumerate(zip(compiled.state_dicts(), eager.state_dicts())):
        for name, value in theirs.items():
            torch.testing.assert_close(mine[name], value, rtol=0, atol=1e-4, msg=f"model {k} {name}")
    assert eager.graphs_compiled is None and eager.recompiles is None


def test_a_learning_rate_schedule_compiles_one_graph_and_never_recompiles(images, masks):
    torch._dynamo.reset()   # this test counts the graphs compiled, so none may be cached
    first = fit("small_cnn", images, masks, "aot_eager")
    rates = RECIPES["small_cnn"].learning_rates(STEPS)
    assert len(set(rates.tolist())) == STEPS          # every step its own rate
    # One graph for the forward pass and loss (no graph breaks), in the first step; none after.
    assert first.graphs_compiled == 1 and first.recompiles == 0
    # Another pass of the same shapes (other seeds, so other weights) reuses the graph.
    again = fit("small_cnn", images, masks, "aot_eager", seeds=(6, 7, 8))
    assert again.graphs_compiled == 0 and again.recompiles == 0
    # Other shapes (two models) compile their own graph, once.
    fewer = fit("small_cnn", images, masks[:2], "aot_eager", seeds=(6, 7))
    assert fewer.graphs_compiled == 1 and fewer.recompiles == 0


def test_compiled_runs_are_stored_apart_and_uncompiled_ones_keep_their_keys():
    plain, compiled = specs.ConvSpec("small_cnn"), specs.ConvSpec("small_cnn", compiled=True)
    assert "compiled" not in plain.config() and compiled.config()["compiled"] is True
    assert {key: value for key, value in compiled.config().items() if key != "compiled"} == plain.config()
    assert spec_from_config(compiled.config()) == compiled and spec_from_config(plain.config()) == plain
    # The pinned keys of uncompiled specs: tests/test_zoo.py::test_conv_specs_keep_their_store_keys.


def test_only_the_stacked_path_compiles(images, masks):
    with pytest.raises(ValueError, match="stacked path"):
        specs.ConvSpec("pixel_mlp", compiled=True)
    with pytest.raises(ValueError, match="stacked path"):
        specs.ConvSpec("small_cnn", path="vmap", compiled=True)
    with pytest.raises(ValueError, match="not the vmap path"):
        zoo._fit("small_cnn", images, masks, [3, 4, 5], RECIPES["small_cnn"], torch.device("cpu"), None,
                 progress=False, path="vmap", compile_backend="aot_eager")


def test_a_compiled_spec_trains_with_inductor(monkeypatch, images, masks):
    seen = {}
    monkeypatch.setattr(zoo, "train_conv_ensemble", lambda *args, **kwargs: seen.update(kwargs))
    specs.ConvSpec("small_cnn", compiled=True).train(images, masks, np.array([3, 4, 5]))
    assert seen["compile_backend"] == specs.COMPILE_BACKEND == "inductor"
    specs.ConvSpec("small_cnn").train(images, masks, np.array([3, 4, 5]))
    assert seen["compile_backend"] is None
