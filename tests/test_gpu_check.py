"""``python -m harness.gpu_check`` before a GPU is lent (issue 13 item 4): ``--help`` works on the
CPU, the dry run runs every section at toy sizes and prints one JSON object with no section's
error, and it leaves no Ray process behind."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from harness import gpu_check
from harness.executors import ChunkSpan

REPO_ROOT = Path(__file__).resolve().parents[1]
RAY_PROCESS_MARKS = (b"raylet", b"gcs_server", b"default_worker.py", b"ray::")


def gpu_check_command(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness.gpu_check", *args], cwd=REPO_ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)


def ray_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if any(mark in command for mark in RAY_PROCESS_MARKS):
                found.add(int(entry.name))
    return found


def test_help_works_on_the_cpu_and_names_every_section():
    result = gpu_check_command("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout
    for name, _ in gpu_check.SECTIONS:
        assert name in " ".join(result.stdout.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_asks_for_one_or_the_dry_run():
    result = gpu_check_command(timeout=120)
    assert result.returncode == 2 and "no CUDA device here" in result.stderr and result.stdout == ""


def test_the_dry_run_runs_every_section_and_prints_one_json_object(tmp_path_factory):
    # One Ray cluster at a time under xdist: tests/test_ray.py takes the same lock.
    with FileLock(tmp_path_factory.getbasetemp().parent / "memsuite-ray-cluster.lock"):
        before = ray_processes()
        result = gpu_check_command("--dry-run")
        deadline = time.monotonic() + 30
        while (left := ray_processes() - before) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not left, f"Ray processes left behind: {left}"
    report = json.loads(result.stdout)  # the whole of stdout is the one object
    sections = report["sections"]
    assert result.returncode == 0, {name: figures.get("traceback") for name, figures in sections.items()}
    assert report["dry_run"] and report["device"] == "cpu"
    assert list(sections) == [name for name, _ in gpu_check.SECTIONS]
    assert all("error" not in figures and "seconds_total" in figures for figures in sections.values())
    assert sections["matmul_peak"]["float32_flops"] > 0
    assert sections["mlp"]["mlp_ensemble_models_per_second"] > 0 and sections["mlp"]["mlp_ensemble_speedup"] > 0
    for model in ("small_cnn", "vgg6"):
        assert sections[model]["models_per_second"] > 0 and sections[model]["utilisation"] > 0
    compiled = sections["conv_compiled"]   # aot_eager in the dry run: no generated code
    assert compiled["conv_small_cnn_stacked_compiled_models_per_second"] > 0
    assert compiled["conv_small_cnn_stacked_compiled_first_pass_graphs_compiled"] == 1
    assert compiled["conv_small_cnn_stacked_compiled_recompiles"] == 0
    for family in ("ridge", "mlp"):
        assert sections["approximation"][family]["projected_paper_seconds"] > sections["approximation"][family]["seconds"]
    ray_figures = sections["ray_fractional_gpus"]
    if importlib.util.find_spec("ray") is None:
        assert "skipped" in ray_figures
    else:
        assert ray_figures["one_at_a_time"]["most_chunks_at_once"] == 1
        assert 1 <= ray_figures["four_at_once"]["most_chunks_at_once"] <= 4
        assert ray_figures["same_bytes"]


def test_most_at_once_counts_overlapping_spans():
    spans = [ChunkSpan(0, 2, "host", 1, 0.0, 2.0), ChunkSpan(2, 4, "host", 2, 1.0, 3.0),
             ChunkSpan(4, 6, "host", 1, 2.5, 4.0), ChunkSpan(6, 8, "host", 3, 5.0, 6.0)]
    assert gpu_check.most_at_once(spans) == 2
    assert gpu_check.most_at_once(spans[3:]) == 1
    assert gpu_check.most_at_once([]) == 0


def test_a_failing_section_is_reported_and_the_others_still_run(monkeypatch):
    def broken(check):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(gpu_check, "SECTIONS", [("broken", broken), ("environment", gpu_check.environment)])
    check = gpu_check.Check(torch.device("cpu"), True, gpu_check.DRY_RUN, time.monotonic() + 60)
    figures = gpu_check.run_sections(check)
    assert figures["broken"]["error"] == "RuntimeError: broken on purpose"
    assert figures["environment"]["device"] == "cpu"
    spent = gpu_check.Check(torch.device("cpu"), True, gpu_check.DRY_RUN, time.monotonic() - 1)
    assert gpu_check.run_sections(spent)["environment"] == {"skipped": "the time budget is spent"}
