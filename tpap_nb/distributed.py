"""Data-parallel FGSM-RO training (Algorithm 1) and sharded evaluation with torch.distributed (DDP).

    torchrun --nproc_per_node 2 -m tpap_nb.distributed --profile quick --recipe fgsm --out runs/ddp.pt

Every rank draws the same global batch from a generator seeded with cfg['seed'] (the order and
augmentation of `tpap_nb.fit`; each rank holds the whole uint8 data set, as `fit` does) and
trains on its contiguous shard; DDP averages the gradients.
Each rank's mean loss is scaled by world * n_local / n_global, so the averaged gradient is the
full-batch gradient even when the last batch does not split evenly: with a per-example model
the weights match a one-process `fit` run up to float rounding.

Adversarial examples are crafted on the inner module (`ddp.module`) in eval mode, so crafting
never goes through DDP's gradient hooks (an input-only `autograd.grad` through the DDP wrapper
would leave its reducer waiting); only the weight update's forward/backward go through DDP.

BatchNorm: in train mode each rank normalises with its own shard's statistics and updates its own
running stats; DDP then broadcasts rank 0's buffers at the start of every forward
(broadcast_buffers=True), so the kept running stats are rank 0's (the eval-mode FGSM crafting
of the next step still sees each rank's own update). Results therefore differ a little from one
process with the whole batch. `sync_bn=True` (CUDA only: SyncBatchNorm does not
run on CPU) normalises over the global batch instead. PGD/TRADES random starts are drawn per rank
from the global generator, so those recipes do not reproduce a one-process run bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .data import Dataset, batches
from .evaluate import robust_predictions
from .runtime import runtime_for
from .settings import as_config
from .train import OPTIONAL_RUN_KEYS, RUN_KEYS, _versions, fast_spec, lr_scheduler, save_checkpoint, train_step


def world() -> tuple[int, int]:
    """(rank, world_size) of an initialised process group; a clear error otherwise."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("No torch.distributed process group: launch with `torchrun --nproc_per_node N -m "
                           "tpap_nb.distributed ...` or tpap_nb.distributed.launch(fn, N); for one process "
                           "use tpap_nb.fit.")
    return dist.get_rank(), dist.get_world_size()


def shard(t: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s contiguous part of a batch (sizes differ by at most one, like torch.tensor_split)."""
    return torch.tensor_split(t, world_size)[rank]


class CraftOnInner(nn.Module):
    """Routes eval-mode calls (attack crafting) to `ddp.module` and train-mode calls through DDP.

    `training_loss` switches its model to eval to craft x_adv and back to train for the loss,
    so passing this wrapper reuses every recipe unchanged.
    """

    def __init__(self, ddp: DDP):
        super().__init__()
        self.ddp = ddp

    def forward(self, x):
        return self.ddp(x) if self.training else self.ddp.module(x)


def fit_ddp(model: nn.Module, data: Dataset, cfg: Mapping, ckpt: str | Path | None = None,
            sync_bn: bool = False) -> list[dict]:
    """`tpap_nb.fit` for one rank of a process group (no evaluation, no resume); trains `model` in place.

    Call on every rank with the same model initialisation (DDP also broadcasts rank 0's weights),
    data on this rank's device and the same cfg. Returns per-epoch records with the global mean loss.
    With `ckpt`, rank 0 saves a `fit`-compatible checkpoint each epoch (`load_model` reads it).
    """
    cfg = as_config(cfg)
    rank, world_size = world()
    device = next(model.parameters()).device
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn=True needs CUDA (SyncBatchNorm does not run on CPU); use a model "
                             "without BatchNorm or accept per-rank BN statistics (see the module docstring).")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps BN layers in place
    ddp = DDP(model, device_ids=[device] if device.type == "cuda" else None)
    net = CraftOnInner(ddp)
    rt = runtime_for(cfg, device)
    opt = torch.optim.SGD(ddp.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    sched, per_step = lr_scheduler(opt, cfg, -(-len(data.y_train) // cfg["batch_size"]))
    gen = torch.Generator().manual_seed(cfg["seed"])
    history = []
    meta = _meta(model, data, cfg, world_size) | {"fast_path": fast_spec(rt), "runtime": rt.record()}
    with rt.scope():
        for epoch in range(cfg["epochs"]):
            ddp.train()
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            tally = torch.zeros(2, dtype=torch.float64, device=device)  # sum of loss * n, n
            for x, y in batches(data, cfg["batch_size"], generator=gen):
                if len(y) >= world_size:  # else a shard would be empty: skipped on every rank alike
                    xs, ys = shard(x, rank, world_size), shard(y, rank, world_size)
                    # scaled so that DDP's gradient average is the full-batch gradient
                    loss = train_step(net, opt, xs, ys, cfg, rt, scale=world_size * len(ys) / len(y))
                    tally += torch.tensor([loss.item() * len(ys), len(ys)], dtype=torch.float64, device=device)
                if per_step:
                    sched.step()
            dist.all_reduce(tally)
            history.append({"epoch": epoch + 1, "lr": lr, "loss": (tally[0] / tally[1].clamp(min=1)).item(),
                            "train_seconds": time.perf_counter() - t0, "world_size": world_size})
            if not per_step:
                sched.step()
            if ckpt is not None and rank == 0:
                save_checkpoint(Path(ckpt), model, opt, sched, meta, history, gen)
    model.eval()
    model.meta = meta
    return history


def _meta(model, data: Dataset, cfg: Mapping, world_size: int) -> dict:
    """The metadata `fit` writes, plus world_size."""
    return {k: cfg.get(k) for k in RUN_KEYS} | {k: cfg.get(k, d) for k, d in OPTIONAL_RUN_KEYS.items()} | {
        "dataset": data.name, "model": getattr(model, "arch", type(model).__name__), "milestones":
        list(cfg["milestones"]), "num_classes": data.num_classes, "in_channels": data.in_channels,
        "image_size": data.image_size, "profile": cfg.get("profile"), "xi": cfg.get("xi"),
        "versions": {k: str(v) for k, v in _versions().items()}, "world_size": world_size}


def evaluate_ddp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack=None, xi: float | None = None,
                 batch_size: int = 512) -> dict:
    """`robust_predictions` on this rank's shard of (x, y), gathered: one record, in order, on every rank.

    `attack(x, y)` must craft on the bare (inner) model, as in the paper's protocol.
    """
    rank, world_size = world()
    model = model.module if isinstance(model, DDP) else model
    sizes = [len(s) for s in torch.tensor_split(torch.arange(len(y)), world_size)]
    local = robust_predictions(model, shard(x, rank, world_size), shard(y, rank, world_size), attack, xi,
                               batch_size)
    out = {"n": len(y), "world_size": world_size}
    for key, correct in local.items():
        padded = torch.zeros(max(sizes), dtype=torch.int64, device=y.device)
        padded[: len(correct)] = correct.long()
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded)
        out[key] = torch.cat([p[:s] for p, s in zip(parts, sizes)]).bool()
        out[f"acc_{key}"] = out[key].float().mean().item()
    return out


# ----------------------------------------------------------------------------- launching

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, fn, world_size, port, backend, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def launch(fn, world_size: int = 2, *args, backend: str = "gloo", start_method: str = "spawn") -> None:
    """Run fn(rank, world_size, *args) in `world_size` new processes joined in one process group.

    With "spawn", `fn` must be importable (a module-level function, not one defined in a notebook).
    "fork" (Linux) skips re-importing torch in each child, but only from a process that has not yet run an
    OpenMP parallel region on two or more threads: libgomp is not fork-safe, and a child forked after one
    waits forever at its first parallel convolution (torch.set_num_threads(1) in fn does not help). The
    test suite hung so in CI; spawn is the default.
    """
    if start_method == "fork":
        import torch._dynamo  # noqa: F401  (DDP's constructor imports it: seconds; once here, shared by fork)
    mp.start_processes(_entry, args=(fn, world_size, free_port(), backend, args), nprocs=world_size,
                       join=True, start_method=start_method)


def main(argv=None) -> dict:
    """Entry point under torchrun: train with DDP, evaluate clean/FGSM with and without TPAP, save."""
    from .attacks.base import fgsm
    from .config import get_profile
    from .runs import fresh_model, run_data

    p = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m tpap_nb.distributed")
    p.add_argument("--profile", default="quick")
    p.add_argument("--recipe", default="fgsm")
    overrides = dict(dataset=str, model=str, epochs=int, batch_size=int, lr=float, eps=float, xi=float,
                     n_eval=int, seed=int, device=str)
    for k, t in overrides.items():
        p.add_argument("--" + k.replace("_", "-"), type=t, default=None)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm (CUDA only)")
    p.add_argument("--out", default=None, help="rank 0 saves a tpap_nb checkpoint here")
    a = p.parse_args(argv)
    cfg = get_profile(a.profile, recipe=a.recipe, **{k: getattr(a, k) for k in overrides})
    cuda = cfg["device"] != "cpu" and torch.cuda.is_available()
    owner = not dist.is_initialized()  # torchrun: we create the group; launch(): it exists already
    if owner:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank, world_size = world()
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    try:
        data = run_data(cfg, device=device)
        model = fresh_model(cfg, data)
        history = fit_ddp(model, data, cfg, ckpt=a.out, sync_bn=a.sync_bn)
        xte, yte = data.test_batch(cfg["n_eval"])
        rec = {"clean": evaluate_ddp(model, xte, yte, None, cfg["xi"]),
               "fgsm": evaluate_ddp(model, xte, yte, lambda u, v: fgsm(model, u, v, cfg["attack_eps"]), cfg["xi"])}
        summary = {k: {m: r[f"acc_{m}"] for m in ("bare", "tpap")} for k, r in rec.items()}
        if rank == 0:
            print(json.dumps({"world_size": world_size, "history": history, "accuracy": summary,
                              "checkpoint": a.out}, indent=2))
        return {"history": history, "accuracy": summary}
    finally:
        if owner:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
