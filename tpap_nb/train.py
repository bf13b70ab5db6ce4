"""FGSM-RO training (Algorithm 1, training phase), the baselines' losses, the one training step, the history and
run names; checkpoints are written and read by tpap_nb.checkpoints."""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks.base import fgsm, pgd, pgd_loop
from .checkpoints import CheckpointError, RunLock, check_weights, read_checkpoint, save_checkpoint
from .checks import inputs_checked
from .config import __version__, runs_root
from .data import Dataset, batches
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


# ----------------------------------------------------------------------------- run names and metadata

def _versions() -> dict:
    import torchvision

    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "tpap_nb": __version__}


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
