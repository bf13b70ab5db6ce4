"""DDP training and sharded evaluation equal one process with the same global batch (tpap_nb.distributed).

The tiny model uses GroupNorm, not BatchNorm: GroupNorm normalises each example on its own, so
the loss is a mean of per-example terms and DDP's average of per-rank (rescaled) mean-loss
gradients is exactly the full-batch gradient. With train-mode BatchNorm every rank would
normalise by its own shard's statistics and the weights would legitimately differ.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from tpap_nb import distributed as D
from tpap_nb.attacks.base import fgsm
from tpap_nb.checkpoints import load_model
from tpap_nb.config import get_profile
from tpap_nb.data import load_dataset
from tpap_nb.evaluate import robust_predictions
from tpap_nb.train import fit

pytestmark = pytest.mark.slow  # process groups and training: seconds each

RECIPES = ("plain", "fgsm")
# 211 examples in batches of 40: five even batches, then 11 split 6/5 (unequal shards).
CFG = get_profile("smoke", epochs=2, batch_size=40, eval_every=0, lr=0.05, milestones=(1,), precision="float32",
                  threads=1)  # a module fixture: set up before conftest's per-test float32 environment


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, 2, 1), nn.GroupNorm(4, 16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _worker(rank, world_size, data, out_dir):
    torch.set_num_threads(1)
    out = {}
    for recipe in RECIPES:
        model = tiny_model()
        out[recipe] = {"history": D.fit_ddp(model, data, {**CFG, "recipe": recipe}),
                       "weights": model.state_dict()}
    x, y = data.test_batch(len(data.y_test))
    attack = lambda a, b: fgsm(model, a, b, CFG["eps"])  # noqa: E731  (crafted on the bare model)
    out["eval"] = D.evaluate_ddp(model, x, y, attack, xi=CFG["xi"], batch_size=32)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = load_dataset("digits").subset(n_train=211, n_test=101)
    out_dir = tmp_path_factory.mktemp("ddp")
    D.launch(_worker, 2, data, str(out_dir))  # spawn: a fork after earlier tests ran OpenMP deadlocks in libgomp
    ranks = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    single = {}
    for recipe in RECIPES:
        model = tiny_model()
        single[recipe] = {"history": fit(model, data, {**CFG, "recipe": recipe}, progress=False),
                          "weights": model.state_dict()}
    return data, ranks, single


def _close(a: dict, b: dict, atol=1e-5, rtol=1e-4):
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=rtol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("recipe", RECIPES)
def test_ddp_weights_equal_single_process(runs, recipe):
    _, ranks, single = runs
    _close(ranks[0][recipe]["weights"], ranks[1][recipe]["weights"], atol=0, rtol=0)  # ranks stay in sync
    _close(ranks[0][recipe]["weights"], single[recipe]["weights"])
    moved = max((single[recipe]["weights"][k] - tiny_model().state_dict()[k]).abs().max().item()
                for k in single[recipe]["weights"])
    assert moved > 1e-3  # the comparison is not between two untrained models
    for h_ddp, h_one in zip(ranks[0][recipe]["history"], single[recipe]["history"]):
        assert h_ddp["loss"] == pytest.approx(h_one["loss"], rel=1e-4)
        assert h_ddp["lr"] == h_one["lr"]


def test_sharded_eval_equals_single_process(runs):
    data, ranks, _ = runs
    model = tiny_model()
    model.load_state_dict(ranks[0]["fgsm"]["weights"])
    x, y = data.test_batch(len(data.y_test))
    ref = robust_predictions(model, x, y, lambda a, b: fgsm(model, a, b, CFG["eps"]), xi=CFG["xi"])
    for rec in ranks:
        assert rec["eval"]["n"] == len(y) == 101 and rec["eval"]["world_size"] == 2
        for key in ("bare", "tpap"):
            assert torch.equal(rec["eval"][key], ref[key])
            assert rec["eval"][f"acc_{key}"] == pytest.approx(ref[key].float().mean().item())


def test_shard_covers_batch_in_order():
    t = torch.arange(11)
    parts = [D.shard(t, r, 2) for r in range(2)]
    assert [len(p) for p in parts] == [6, 5] and torch.equal(torch.cat(parts), t)


def test_without_process_group_says_how_to_launch():
    with pytest.raises(RuntimeError, match="torchrun"):
        D.world()


def _cli_worker(rank, world_size, argv, out_dir):
    torch.set_num_threads(1)
    torch.save(D.main(argv), os.path.join(out_dir, f"cli{rank}.pt"))


def test_cli_main_writes_loadable_checkpoint(tmp_path):
    """`main` as torchrun runs it (here in a group `launch` made, so no second torch import)."""
    out = tmp_path / "ddp.pt"
    argv = ["--profile", "smoke", "--recipe", "fgsm", "--epochs", "1", "--n-eval", "40", "--out", str(out)]
    D.launch(_cli_worker, 2, argv, str(tmp_path))
    recs = [torch.load(tmp_path / f"cli{r}.pt", weights_only=False) for r in range(2)]
    assert recs[0]["accuracy"] == recs[1]["accuracy"]  # one gathered record on every rank
    assert set(recs[0]["accuracy"]) == {"clean", "fgsm"}
    model, history = load_model(out, dataset="digits", model="small_cnn")
    assert len(history) == 1 and history[0]["world_size"] == 2
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
