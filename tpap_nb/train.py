"""FGSM-RO training (Algorithm 1, training phase), the baselines' losses, history and checkpoints."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pickle
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks.base import fgsm, pgd, pgd_loop
from .checks import first_line, inputs_checked
from .config import __version__, runs_root
from .data import Dataset, batches
from .models import build_model
from .runtime import Runtime, runtime_for
from .settings import RECIPES, as_config

# Settings that define a training run: a checkpoint is only resumed or reused when all match.
RUN_KEYS = ("dataset", "model", "width", "recipe", "eps", "alpha", "epochs", "batch_size", "lr",
            "milestones", "momentum", "weight_decay", "n_train", "seed", "pgd_steps", "pgd_alpha", "beta")
# Settings that joined a run's name later: part of it only when they differ from these defaults, so the
# checkpoints made before them keep their names. clean_bn_forward: the authors' clean forward
# (training_loss); lr_schedule: config.LR_SCHEDULES; n_val: training images held out (runs.run_data).
OPTIONAL_RUN_KEYS = {"clean_bn_forward": False, "lr_schedule": "multistep", "n_val": 0}
# The resolved fast path (tpap_nb.runtime): bf16 autocast, channels_last inputs, torch.compile. Part of a
# run's name only when on (a bf16 network is another network than its float32 twin).
FAST_KEYS = ("amp", "channels_last", "compile")


def fast_spec(rt: Runtime) -> dict:
    """The run-name entries of a resolved runtime (the names checkpoints have carried since the fast path)."""
    return {"amp": "bf16" if rt.precision == "bf16" else None, "channels_last": rt.channels_last,
            "compile": rt.compile}


# Recipes trained at the FGSM-RO eps; the others (PGD-AT, TRADES, MART) at cfg['baseline_eps'] where it is set.
FGSM_RECIPES = ("fgsm", "fgsm_multi", "fgsm_trades", "fgsm_mart")


def recipe_config(cfg: Mapping, recipe: str) -> Mapping:
    """cfg for training `recipe`: PGD-AT on cfg['pgd_at_schedule'] where it is set (`paper`: the authors' 120
    epochs), the PGD-based baselines at cfg['baseline_eps'] where it is set (`paper` on CIFAR-100: the attack
    eps 8/255, where FGSM-RO trains at 12/255). Both are resolved by config.get_profile."""
    cfg, changes = as_config(cfg), {"recipe": recipe}
    if recipe == "pgd" and cfg["pgd_at_schedule"] is not None:
        changes |= cfg["pgd_at_schedule"]
    if recipe not in FGSM_RECIPES and cfg["baseline_eps"] is not None:
        changes["eps"] = cfg["baseline_eps"]
    return cfg | changes


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says why and what to do."""


# ----------------------------------------------------------------------------- losses

def _kl(logits_adv, logits_nat):
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="none").sum(1)


def _trades_adv(model, x, eps, alpha, steps):
    """TRADES inner maximisation: PGD (`pgd_loop`) on KL(f(x') || f(x)) from x + 0.001 N(0, 1)."""
    with torch.no_grad():
        p_nat = model(x)
    x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
    return pgd_loop(model, x, x_adv, lambda logits: _kl(logits, p_nat).sum(), eps, alpha, steps)


def _mart_loss(logits, logits_adv, y, beta):
    """MART (Wang et al. 2020): boosted CE on x_adv + beta * KL weighted by 1 - p_y(x)."""
    p_adv = F.softmax(logits_adv, 1)
    top2 = p_adv.argsort(1)[:, -2:]
    y_other = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), y_other)
    p_true = F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    return loss_adv + beta * (_kl(logits_adv, logits) * (1.0000001 - p_true)).mean()


def training_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Mapping) -> torch.Tensor:
    """The loss of one batch for `cfg['recipe']`; adversarial examples are crafted in eval mode.

    TRADES and MART pass the clean and the adversarial batch through the network separately,
    clean first (the official TRADES/MART code, and the authors' scripts), so BatchNorm normalises
    each batch by its own statistics. With cfg['clean_bn_forward'] the other recipes also run the
    clean batch in train mode before the adversarial one and discard its output, as the authors'
    FGSM-AT script does (`output_nat = model(data)`, train_fgsm_at_cifar10_TPAP.py:218): the
    gradient is unchanged, BatchNorm's running statistics then average clean and adversarial batches.
    """
    recipe, eps = cfg["recipe"], cfg["eps"]
    alpha = cfg["alpha"] if cfg.get("alpha") is not None else eps  # Algorithm 1: alpha = eps
    if recipe == "plain":
        return F.cross_entropy(model(x), y)
    model.eval()
    if recipe in ("fgsm", "fgsm_trades", "fgsm_mart"):
        x_adv = fgsm(model, x, y, alpha)  # Eq. 1-2, no random start
    elif recipe == "fgsm_multi":  # TPAP* (Tab. 2): 8/255 and 16/255 FGSM examples
        x_adv = torch.cat([fgsm(model, x, y, alpha), fgsm(model, x, y, 2 * alpha)])
        y = torch.cat([y, y])
    elif recipe in ("pgd", "mart"):
        x_adv = pgd(model, x, y, eps, cfg["pgd_alpha"], cfg["pgd_steps"], random_start=True)
    elif recipe == "trades":
        x_adv = _trades_adv(model, x, eps, cfg["pgd_alpha"], cfg["pgd_steps"])
    elif recipe == "cw2":  # Tab. 7: CW-L2 examples (pgd_steps Adam steps, no binary search) instead of FGSM
        from .attacks.cw import cw_l2

        x_adv = cw_l2(model, x, y, steps=cfg["pgd_steps"], binary_search_steps=1)
    else:
        raise ValueError(f"Unknown training recipe {recipe!r}; choose one of {RECIPES}.")
    model.train()
    if recipe in ("trades", "fgsm_trades"):
        nat = model(x)
        adv = model(x_adv)
        return F.cross_entropy(nat, y) + cfg["beta"] * _kl(adv, nat).mean()
    if recipe in ("mart", "fgsm_mart"):
        nat = model(x)
        return _mart_loss(nat, model(x_adv), y, cfg["beta"])
    if cfg.get("clean_bn_forward"):
        with torch.no_grad():  # the authors keep the graph but never backpropagate through it
            model(x)
    return F.cross_entropy(model(x_adv), y)  # Eq. 4: the loss on the adversarial batch only


def train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: Mapping,
               rt: Runtime, scale: float = 1.0) -> torch.Tensor:
    """One training iteration of cfg['recipe'] in the runtime's precision and memory format: the loss
    (`training_loss`), backward of scale * loss, an optimiser step; returns the (unscaled) loss.
    `fit`, Tab. 5's timer, the bench and DDP (scale: this rank's share of the global batch) all run this."""
    with rt.autocast():
        loss = training_loss(net, rt.inputs(x), y, cfg)
    opt.zero_grad(set_to_none=True)
    (loss * scale if scale != 1.0 else loss).backward()
    opt.step()
    return loss.detach()


# ----------------------------------------------------------------------------- evaluation (handed to fit)

# What `fit` is handed to measure an evaluated epoch: evaluate(model, data, cfg) -> the epoch's numbers for the
# history; where it has a `settings(cfg)` (what those numbers depend on beyond the weights), a history measured
# with other settings is measured again (`reevaluated`). The kit's is `evaluate.evaluate_epoch`.
EpochEvaluator = Callable[[nn.Module, Dataset, Mapping], dict]


def kit_evaluation() -> EpochEvaluator:
    """What `fit` and `reevaluated` use when handed no evaluation: `evaluate.evaluate_epoch` (accuracies on the fixed
    evaluation subsets; the kit's history). The only use of evaluate in this module."""
    from .evaluate import evaluate_epoch

    return evaluate_epoch


def __getattr__(name: str):
    """`train.evaluate_epoch`: where it was before it moved to evaluate.py (runs.py and scripts/cifar_probe.py
    still import it from here)."""
    if name == "evaluate_epoch":
        return kit_evaluation()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def robust_overfitting_test(history: list[dict], known_min: float = 0.9, other_max: float = 0.1,
                            test_min: float = 0.5) -> dict:
    """Sec. 3.2: train FGSM acc > 90 %, train PGD-20 acc < 10 %, test clean and FGSM acc high."""
    last = next((h for h in reversed(history) if "train_fgsm" in h), None)
    if last is None:
        raise ValueError("The history has no evaluated epoch; train with eval_every >= 1.")
    checks = {
        "train FGSM acc > %.0f%%" % (100 * known_min): (last["train_fgsm"], last["train_fgsm"] > known_min),
        "train PGD-20 acc < %.0f%%" % (100 * other_max): (last["train_pgd20"], last["train_pgd20"] < other_max),
        "test clean acc >= %.0f%%" % (100 * test_min): (last["test_clean"], last["test_clean"] >= test_min),
        "test FGSM acc >= %.0f%%" % (100 * test_min): (last["test_fgsm"], last["test_fgsm"] >= test_min),
    }
    return {"epoch": last["epoch"], "checks": checks, "robust_overfit": all(ok for _, ok in checks.values())}


# ----------------------------------------------------------------------------- checkpoints

def _versions() -> dict:
    import torchvision

    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "tpap_nb": __version__}


def save_checkpoint(path: Path, model, optimizer, scheduler, meta, history, generator) -> None:
    """Write atomically: a temp file of this writer's own (pid + random), fsynced, then renamed over the old one,
    so a run killed mid-write leaves the last good checkpoint (and two writers never share a temp file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": "tpap_nb-checkpoint-1", "meta": meta, "history": history,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "generator": generator.get_state()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError, AttributeError):  # the rename itself, where directories can be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


CHECKPOINT_PARTS = {"meta": dict, "history": list, "model": dict}
META_KEYS = ("model", "dataset", "num_classes", "in_channels", "width")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint safely (weights_only=True: no arbitrary code is unpickled); any unreadable file,
    or one without the parts of a tpap_nb checkpoint, is a CheckpointError naming it and what to do."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file: remove or rename it (a checkpoint "
                              "is one .pt file written by tpap_nb.fit).")
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a write into it was cut off before anything was saved. "
                              "Delete it to retrain.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only's refusal: its own line says what it refused
        boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
        why = next((ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith(boiler)),
                   first_line(err))
        raise CheckpointError(
            f"{path} is not a loadable tpap_nb checkpoint ({why}). It was refused "
            "without running any code inside it; delete it to retrain, or check where it came from."
        ) from None
    except Exception as err:  # truncated or damaged: RuntimeError (zip reader), OSError, EOFError, ...
        raise CheckpointError(
            f"{path} ({size} bytes) cannot be read: {type(err).__name__}: {first_line(err)}. It is truncated or "
            "damaged (a copy cut short, a full disk); delete it to retrain, or copy it again."
        ) from None
    if not isinstance(state, dict) or state.get("format") != "tpap_nb-checkpoint-1":
        raise CheckpointError(f"{path} is not a tpap_nb checkpoint (no tpap_nb metadata): pass a file written by "
                              "tpap_nb.fit, or delete it to retrain.")
    problems = [f"no {part!r} ({kind.__name__})" for part, kind in CHECKPOINT_PARTS.items()
                if not isinstance(state.get(part), kind)]
    if not problems:
        problems = [f"its meta lacks {k!r}" for k in META_KEYS if k not in state["meta"]]
    if problems:
        raise CheckpointError(f"{path} is marked as a tpap_nb checkpoint but has {', '.join(problems)}: it was "
                              "written by something else or damaged. Delete it to retrain.")
    return state


def check_weights(path: str | Path, model: nn.Module, weights: dict) -> None:
    """The checkpoint's weights fit `model` itself (names and shapes), else one CheckpointError naming both."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k}: saved {tuple(weights[k].shape)}, this model {tuple(v.shape)}"
              for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = ([f"{len(shapes)} shape(s) differ ({shapes[0]}{', ...' if len(shapes) > 1 else ''})"] if shapes else []) + (
        [f"{len(missing)} tensor(s) of this model missing ({missing[0]}{', ...' if len(missing) > 1 else ''})"]
        if missing else []) + (
        [f"{len(unexpected)} unknown to it ({unexpected[0]}{', ...' if len(unexpected) > 1 else ''})"]
        if unexpected else [])
    raise CheckpointError(f"{path} holds the weights of another network than this "
                          f"{getattr(model, 'arch', type(model).__name__)}: {'; '.join(parts)}. Build the model it "
                          "was made for (its meta names model, width, in_channels, num_classes) or delete it to "
                          "retrain.")


def load_model(path: str | Path, dataset: str | None = None, model: str | None = None, device="cpu"):
    """Rebuild the model a checkpoint describes; refuse one made for another model or dataset."""
    state = read_checkpoint(path)
    meta = state["meta"]
    for key, want in (("dataset", dataset), ("model", model)):
        if want is not None and meta[key] != want:
            raise CheckpointError(
                f"{path} holds a {meta['model']} trained on {meta['dataset']}, but {key} {want!r} was "
                f"expected. Pass the checkpoint made for {want!r} or train one (tpap_nb.get_or_train)."
            )
    net = build_model(meta["model"], meta["num_classes"], meta["in_channels"], meta["width"], pretrained=False)
    check_weights(path, net, state["model"])
    net.load_state_dict(state["model"])
    net.meta = meta
    return net.to(device).eval(), state["history"]


class RunLock:
    """`<ckpt>.lock`: one process at a time trains into a checkpoint; a second one waits (saying who holds it).

    An flock on the file, which the kernel drops when its holder dies: a lock left by a killed process is
    taken over by the next run. The file says who holds it (pid, host, since) for the waiting message; on
    taking it, temp files that dead writers left beside the checkpoint are removed.
    """

    def __init__(self, ckpt: str | Path, wait: bool = True, poll: float = 0.5):
        self.ckpt = Path(ckpt)
        self.path = self.ckpt.with_name(self.ckpt.name + ".lock")
        self.wait, self.poll, self.fd = wait, poll, None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; runs into one checkpoint are not guarded there
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                if not self.wait:
                    raise CheckpointError(f"{self.ckpt} is in progress: {holder} is training into it. Wait for it "
                                          "to finish (then this run reuses it), or choose another path.") from None
                if not told:
                    print(f"{self.ckpt.name}: {holder} is training into it; waiting for it to finish "
                          "(this run then resumes from its checkpoint).", flush=True)
                    told = True
                time.sleep(self.poll)
                continue
            except OSError:  # a file system without locks: go on unguarded
                os.close(fd)
                return self
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the last holder removed the file while we waited on it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            self.fd = fd
            # Only the holder writes: any other temp file beside the checkpoint is a dead writer's.
            for tmp in self.ckpt.parent.glob(glob.escape(self.ckpt.name) + ".*tmp"):
                if not tmp.name.startswith(f"{self.ckpt.name}.{os.getpid()}-"):
                    tmp.unlink(missing_ok=True)
            return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"process {info['pid']} on {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # before unlocking: a waiter on this file sees it gone and retries
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def run_spec(cfg: Mapping, rt: Runtime | None = None) -> dict:
    """What defines a training run: RUN_KEYS, the optional keys that differ from their defaults, the fast path on."""
    fast = fast_spec(rt if rt is not None else runtime_for(cfg))
    return ({k: cfg.get(k) for k in RUN_KEYS}
            | {k: cfg[k] for k, default in OPTIONAL_RUN_KEYS.items() if cfg.get(k, default) != default}
            | {k: v for k, v in fast.items() if v})


def run_name(cfg: Mapping) -> str:
    """A checkpoint named by what made it: dataset, model, recipe, eps, profile + settings hash."""
    spec = run_spec(cfg)
    key = json.dumps(spec, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    ds = cfg["dataset"].replace(":", "_").replace("/", "_")
    return f"{ds}-{cfg['model']}-{cfg['recipe']}-eps{cfg['eps'] * 255:.0f}-{cfg.get('profile', 'custom')}-{digest}"


def checkpoint_path(cfg: Mapping) -> Path:
    return runs_root() / "checkpoints" / f"{run_name(cfg)}.pt"


# ----------------------------------------------------------------------------- training

def lr_scheduler(opt: torch.optim.Optimizer, cfg: Mapping, steps_per_epoch: int):
    """The run's lr schedule and whether it steps per batch: MultiStepLR per epoch, or the one-cycle per step."""
    if cfg["lr_schedule"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg["milestones"]), gamma=0.1), False
    if cfg["lr_schedule"] != "onecycle":
        raise ValueError(f"lr_schedule={cfg['lr_schedule']!r}: choose 'multistep' or 'onecycle'.")
    total = max(1, cfg["epochs"] * steps_per_epoch)
    up = max(1, round(ONECYCLE_PEAK * total))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: t / up if t < up else max(0.0, (total - t) / (total - up))), True


# The numbers of an evaluated epoch that fit's progress bar shows (name on the bar: key in the record).
POSTFIX = {"clean": "test_clean", "fgsm": "test_fgsm", "pgd": "test_pgd20", "tpap_pgd": "tpap_pgd20"}
# The one-cycle's peak, as a fraction of all steps (the third-round probes, ../shared/notes/probes.md).
ONECYCLE_PEAK = 0.4


def fit(model: nn.Module, data: Dataset, cfg: Mapping, ckpt: str | Path | None = None,
        progress: bool = True, evaluate: EpochEvaluator | None = None) -> list[dict]:
    """Train `model` on `data` with cfg['recipe'] (default: Algorithm 1), evaluating and checkpointing.

    cfg needs eps, xi, epochs, batch_size, lr, milestones, momentum, weight_decay, n_eval,
    eval_every, seed. Every cfg['eval_every'] epochs and after the last (none with 0), `evaluate(model, data,
    cfg)` adds its numbers to the epoch's record (None: `kit_evaluation()`, the kit's accuracies). With `ckpt`,
    each epoch is saved atomically and a killed run resumes. The device settings (precision, channels_last
    inputs, threads, compile) come from `runtime.runtime_for(cfg)`; the model's own weights and memory format
    are left as they are.
    """
    cfg = as_config(cfg)
    evaluate = evaluate if evaluate is not None else kit_evaluation()
    device = next(model.parameters()).device
    rt = runtime_for(cfg, device)
    # Training steps run through the compiled module; it shares the weights, so checkpoints,
    # evaluation and the returned model are the plain `model`.
    net = rt.compiled(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"], fused=True if device.type == "cuda" else None)
    sched, per_step = lr_scheduler(opt, cfg, -(-len(data.y_train) // cfg["batch_size"]))
    gen = torch.Generator().manual_seed(cfg["seed"])
    meta = {k: cfg.get(k) for k in RUN_KEYS} | {k: cfg.get(k, d) for k, d in OPTIONAL_RUN_KEYS.items()} | {
        "dataset": data.name, "model": getattr(model, "arch", type(model).__name__),
        "num_classes": data.num_classes, "in_channels": data.in_channels, "image_size": data.image_size,
        "profile": cfg.get("profile"), "xi": cfg["xi"], "versions": _versions(),
        "fast_path": fast_spec(rt), "runtime": rt.record()}
    meta = json.loads(json.dumps(meta, default=str))  # plain types only: loadable with weights_only=True
    history: list[dict] = []
    # One process trains into ckpt at a time: a second one waits here, then resumes from what the first saved.
    lock = RunLock(ckpt).acquire() if ckpt is not None else contextlib.nullcontext()
    try:
        if ckpt is not None and Path(ckpt).exists():
            state = read_checkpoint(ckpt)
            keys = RUN_KEYS + tuple(OPTIONAL_RUN_KEYS)
            old = {k: state["meta"].get(k) for k in RUN_KEYS} | {
                k: state["meta"].get(k, d) for k, d in OPTIONAL_RUN_KEYS.items()}
            new = {k: meta.get(k) for k in keys}
            if old != new:
                diff = {k: (old[k], new[k]) for k in keys if old[k] != new[k]}
                raise CheckpointError(f"{ckpt} was made with other settings {diff} (saved, asked); "
                                      "delete it or choose another path.")
            missing = [part for part in ("optimizer", "scheduler", "generator") if part not in state]
            if missing:
                raise CheckpointError(f"{ckpt} has no {', '.join(missing)} state, so training cannot resume from it "
                                      "(an exported checkpoint holds weights only): load it with tpap_nb.load_model, "
                                      "or delete it to retrain.")
            check_weights(ckpt, model, state["model"])  # the model itself, whatever cfg says its width is
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            history = state["history"]
    except BaseException:
        lock.__exit__(None, None, None)
        raise
    start = len(history)
    epochs = range(start, cfg["epochs"])
    bar = tqdm(epochs, desc=f"{meta['recipe']} {meta['model']}", disable=not progress or start >= cfg["epochs"],
               initial=start, total=cfg["epochs"])
    # Batches come from the data set's uint8 tensors (always valid pixels): no per-step image scans.
    with rt.scope(), lock, inputs_checked():
        for epoch in bar:
            model.train()
            t0, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=device)
            lr = opt.param_groups[0]["lr"]
            for x, y in batches(data, cfg["batch_size"], generator=gen):
                loss = train_step(net, opt, x, y, cfg, rt)
                if per_step:
                    sched.step()
                seen += len(y)
                loss_sum += loss.float() * len(y)  # no host sync per step
            if device.type == "cuda":
                torch.cuda.synchronize()
            rec = {"epoch": epoch + 1, "lr": lr, "loss": loss_sum.item() / max(seen, 1),
                   "train_seconds": time.perf_counter() - t0}
            if per_step:
                rec["lr_end"] = opt.param_groups[0]["lr"]
            else:
                sched.step()
            if cfg["eval_every"] and ((epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]):
                t1 = time.perf_counter()
                rec.update(evaluate(model, data, cfg))
                rec["eval_seconds"] = time.perf_counter() - t1
                bar.set_postfix({short: f"{rec[k]:.2f}" for short, k in POSTFIX.items() if k in rec})
            history.append(rec)
            if ckpt is not None:
                save_checkpoint(Path(ckpt), model, opt, sched, meta, history, gen)
        history = reevaluated(model, data, cfg, history, Path(ckpt).name if ckpt else "run", evaluate)
    model.eval()
    model.meta = meta
    return history


def reevaluated(model: nn.Module, data: Dataset, cfg: Mapping, history: list[dict], name: str,
                evaluate: EpochEvaluator | None = None) -> list[dict]:
    """`history` with its final epoch measured again where it was evaluated with other settings than cfg asks for
    (`evaluate.settings(cfg)`: the kit's are xi, attack eps, n and precision; a reused checkpoint); the checkpoint
    keeps its own record. `evaluate`: as in `fit`."""
    evaluate = evaluate if evaluate is not None else kit_evaluation()
    last = history[-1] if history else {}
    settings = getattr(evaluate, "settings", None)
    asked = settings(cfg) if cfg.get("eval_every") and settings is not None else {}
    if not any(k in last for k in asked) or all(last.get(k, v) == v for k, v in asked.items()):
        return history
    print(f"{name}: final epoch re-evaluated with {asked} (it was evaluated with { {k: last.get(k) for k in asked} }).")
    with runtime_for(cfg, next(model.parameters()).device).scope():
        return [*history[:-1], last | evaluate(model, data, cfg)]
