"""The GPU check runs end to end on the CPU at toy size: every stage, its JSON and its figures."""
import json
import sys

import numpy as np
import pytest

from tpap_nb.config import get_profile
from tpap_nb.experiments import gpu_check


@pytest.fixture
def tiny_cifar(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8), y_train=np.arange(80) % 10,
             x_test=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), y_test=np.arange(24) % 10)
    return path


@pytest.mark.slow
def test_gpu_check_runs_every_stage_at_toy_size(tmp_path, tiny_cifar, monkeypatch):
    monkeypatch.setenv("TPAP_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "out"
    rec = gpu_check.main(["--out", str(out), "--toy", "--device", "cpu", "--dataset", f"npz:{tiny_cifar}"])
    assert set(rec["stages"]) == {"bench", "paper_epochs", "train_gpu_profile", "tab2_subset"}
    assert all("seconds" in st for st in rec["stages"].values()), rec["stages"]
    bench = rec["stages"]["bench"]["result"]
    assert bench["runs"]["float32"]["runtime"]["precision"] == "float32"
    assert "loop_fgsm_train" in bench["runs"]["float32"]["results"]
    stage = rec["stages"]["paper_epochs"]
    epochs, paper_epochs = stage["result"], get_profile("paper")["epochs"]
    for mode in ("float32", "fast"):
        timed = epochs[mode]["all_epochs_seconds"]
        assert len(timed) == epochs[mode]["epochs_timed"] == 1  # --toy times one epoch
        # the projection is the paper's epoch count times a per-epoch time that was measured
        per_epoch = epochs[mode]["projected_seconds_150_epochs"] / paper_epochs
        assert min(timed) - 1e-9 <= per_epoch <= max(timed) + 1e-9
    # an independent clock: the stage's own wall time holds every timed epoch of both runs
    assert sum(sum(epochs[m]["all_epochs_seconds"]) for m in ("float32", "fast")) <= stage["seconds"]
    hist = rec["stages"]["train_gpu_profile"]["result"]["history"]
    assert len(hist) == 1 and "tpap_pgd20" in hist[0]
    rows = {r["attack"]: r for r in rec["stages"]["tab2_subset"]["result"]}
    assert set(rows) == set(gpu_check.TAB2_ATTACKS)
    for name in ("clean", "fgsm", "pgd20"):
        assert 0 <= rows[name]["acc_bare"] <= 100 and rows[name]["n"] == 16
    assert "20 x 0.003" in rows["pgd20"]["label"] and "n = 16" in rows["pgd20"]["label"]
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["stages"]["tab2_subset"]["result"][0]["attack"] == "clean"
    for fig in ("gpu_training_curves", "gpu_tab2_subset"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
        assert json.loads((out / "figures" / f"{fig}.json").read_text())["profile"] == "gpu"


def test_budget_skips_stages_that_do_not_fit(tmp_path, tiny_cifar, monkeypatch):
    import os

    monkeypatch.setenv("TPAP_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("TPAP_FIGURES")
    env, path = dict(os.environ), list(sys.path)
    rec = gpu_check.run(tmp_path / "out", toy=False, budget_s=0.0, device="cpu", dataset=f"npz:{tiny_cifar}")
    assert dict(os.environ) == env and sys.path == path  # nothing of the run outlives it
    assert all("skipped" in st for st in rec["stages"].values())
    assert "tab2_subset" not in rec["stages"]  # nothing trained, nothing to attack


def test_torchattacks_wheel_is_put_on_the_path_only_when_missing(tmp_path, monkeypatch):
    (tmp_path / "torchattacks-3.5.1-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes `import torchattacks` fail
    monkeypatch.setattr(sys, "path", list(sys.path))
    added = gpu_check.add_wheels_to_path([tmp_path])
    assert added == [str(tmp_path / "torchattacks-3.5.1-py3-none-any.whl")] and sys.path[0] == added[0]


def test_gpu_profile_is_the_papers_network_and_radii_on_a_short_fast_schedule():
    gpu, paper, cifar = get_profile("gpu"), get_profile("paper"), get_profile("cifar")
    for key in ("dataset", "model", "width", "eps", "xi", "momentum", "weight_decay", "batch_size"):
        assert gpu[key] == paper[key], key
    assert gpu["epochs"] < paper["epochs"] and gpu["precision"] == "auto"  # bf16 where the device has it
    # what the CPU search learned: the paper's "0.1" start and a first x0.1 drop, batch 128, clean BN forward
    assert gpu["lr"] == cifar["lr"] == 0.1 and gpu["milestones"][0] < gpu["epochs"] and gpu["clean_bn_forward"]
    assert gpu["n_val"] > 0  # xi is chosen on held-out training images
