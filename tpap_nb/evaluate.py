"""The paper's protocol (Sec. 4.1.3) and the tidy record store.

`robust_predictions` is the one implementation of "accuracy of the bare model and of TPAP": an
attack is crafted on the bare model, then purified (Eq. 7-9) and classified. `run_attacks` turns
it into one record per (checkpoint, defence, attack, settings): accuracy in % of the bare model and
of TPAP, the attack's success on the bare model, the fraction of inputs it returned unchanged
(x_adv == x: a minimal-norm attack's failures) and of all-zero images (`sta_advertorch`'s
failures), TPAP's accuracy on the same clean inputs, n, seconds, the implementation that ran and
its label (`attack_label`: steps, step size, restarts / queries, n). Records are appended to
runs/results/records.jsonl and reused: a rerun skips what was computed for the same weights (a digest of
the model's state), examples (a digest of x and y), attack settings, xi, seed, attack precision, device
type, and code (the kit's version and a digest of the modules an attack result depends on), so a fixed
attack or other examples never return an old number.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .attacks.base import fgsm
from .attacks.registry import Attack, attack_info, attack_label, attack_settings, build_attack
from .checks import check_count, check_images, check_labels, check_model_input, check_radius, inputs_checked
from .config import PAPER_EPS, __version__, runs_root
from .data import Dataset, to_float
from .models import eval_mode
from .purify import purify_with_pred
from .runtime import Runtime, runtime_for
from .stats import pack_verdicts

AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # attack(x, y) -> x_adv


def _batched(x, y, batch_size):
    for i in range(0, len(y), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, confidence: bool = False):
    """Labels argmax f(x), in eval mode, batched; with confidence=True, (labels, softmax probability of each)."""
    batch_size = check_count(batch_size, "batch_size")
    with eval_mode(model):
        logits = [model(xb) for xb, _ in _batched(x, x, batch_size)]
    if not confidence:
        return torch.cat([z.argmax(1) for z in logits])
    conf, y_pred = torch.cat([z.softmax(1) for z in logits]).max(1)
    return y_pred, conf


def robust_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: AttackFn | None = None,
                       xi: float | None = None, batch_size: int = 512, cfg: Mapping | None = None,
                       runtime: Runtime | None = None, allow_negative_xi: bool = False) -> dict[str, torch.Tensor]:
    """Per-example correctness on the bare model and after purification.

    The paper's protocol: x_adv = attack(x, y) is crafted on the bare model, then purified
    (Eq. 7-9). Returns bool tensors 'bare' and, when xi is given, 'tpap'. Attack, purification and
    classification run in the attack precision of `runtime` (default: `runtime_for(cfg)`, "auto").
    x, y, xi and the model are checked once here; each attack's output once per batch.
    """
    if xi is not None:
        xi = check_radius(xi, "xi", allow_negative=allow_negative_xi)
    batch_size = check_count(batch_size, "batch_size")
    check_images(x)
    y = check_labels(y, len(x)).to(x.device)
    check_model_input(model, x)
    rt = runtime if runtime is not None else runtime_for(cfg or {}, x.device)
    bare, tpap = [], []
    with eval_mode(model), rt.attacking():
        if len(x):
            with torch.no_grad():
                check_labels(y, len(y), model(rt.inputs(x[:1])).shape[1])
        for xb, yb in _batched(rt.inputs(x), y, batch_size):
            if attack is not None:
                x_adv = check_images(attack(xb, yb), "attack(x, y)")
            else:
                x_adv = xb
            with inputs_checked():
                if xi is None:
                    with torch.no_grad():
                        y_pred = model(x_adv).argmax(1)
                else:
                    x_pur, y_pred = purify_with_pred(model, x_adv, xi)  # its forward is the bare prediction
                    with torch.no_grad():
                        tpap.append(model(x_pur).argmax(1) == yb)
            bare.append(y_pred == yb)
    out = {"bare": torch.cat(bare) if bare else torch.zeros(0, dtype=torch.bool)}
    if xi is not None:
        out["tpap"] = torch.cat(tpap) if tpap else torch.zeros(0, dtype=torch.bool)
    return out


def robust_accuracy(model, x, y, attack=None, xi=None, batch_size=512, cfg=None, runtime=None,
                    allow_negative_xi: bool = False) -> dict[str, float]:
    """Accuracy (fraction) of the bare model and of TPAP on attack(x, y); see robust_predictions."""
    correct = robust_predictions(model, x, y, attack, xi, batch_size, cfg, runtime, allow_negative_xi)
    return {k: v.float().mean().item() for k, v in correct.items()}


# ----------------------------------------------------------------------------- the per-epoch evaluation

class EpochEvaluation:
    """What `train.fit` is handed to measure an evaluated epoch for the history (`evaluate_epoch` is the kit's).

    `evaluate_epoch(model, data, cfg)`: accuracies on the fixed evaluation subsets, train clean/FGSM/PGD-20 and
    test bare and TPAP, plus `settings(cfg)`: what those numbers depend on beyond the weights (xi, attack eps, n,
    attack precision), so a history made with other settings is measured again (`train.reevaluated`). The attacks
    use the attack eps (cfg['attack_eps']), not the training eps, and run in the runtime's attack precision
    (`robust_accuracy` takes it from cfg).
    """

    def __call__(self, model: nn.Module, data: Dataset, cfg: Mapping) -> dict:
        n, eps, xi = cfg["n_eval"], cfg["attack_eps"], cfg["xi"]
        xtr, ytr = to_float(data.x_train[:n]), data.y_train[:n]
        xte, yte = data.test_batch(n)
        attacks = {"clean": None, "fgsm": lambda a, b: fgsm(model, a, b, eps),
                   "pgd20": pgd20_attack(model, cfg)}  # the registry's pgd20, as Tab. 2
        rec = {}
        for name, atk in attacks.items():
            rec[f"train_{name}"] = robust_accuracy(model, xtr, ytr, atk, cfg=cfg)["bare"]
            acc = robust_accuracy(model, xte, yte, atk, xi=xi, cfg=cfg)
            rec[f"test_{name}"], rec[f"tpap_{name}"] = acc["bare"], acc["tpap"]
        return rec | self.settings(cfg)

    @staticmethod
    def settings(cfg: Mapping) -> dict:
        """What an evaluated epoch's numbers depend on beyond the weights (recorded in the history)."""
        return {"eval_xi": float(cfg["xi"]), "eval_eps": float(cfg["attack_eps"]), "eval_n": int(cfg["n_eval"]),
                "eval_precision": runtime_for(cfg).attack_precision}


evaluate_epoch = EpochEvaluation()


# ----------------------------------------------------------------------------- the record store

EPS_KEYS = {"fgsm": ("eps",), "pgd20": ("eps", "alpha"), "pgd100": ("eps", "alpha"), "aa": ("eps",),
            "fwa": ("eps",), "tidim": ("eps", "alpha"), "dim": ("eps", "alpha")}


def attack_overrides(name: str, cfg: Mapping) -> dict:
    """The settings attack `name` runs with on this config: the run's seed, and the paper's radii and step sizes
    (config.PAPER_EPS) moved to the config's attack eps in proportion.

    Never an iteration count: an attack called `pgd20` runs 20 steps on every profile.
    """
    over = {"seed": int(cfg.get("seed") or 0)}
    eps = cfg["attack_eps"]  # the test-attack radius, not the training eps
    if abs(eps - PAPER_EPS) > 1e-9:
        base = attack_settings(name)
        over |= {k: base[k] * eps / PAPER_EPS for k in EPS_KEYS.get(name, ())}
    return over


def pgd20_attack(model: nn.Module, cfg: Mapping) -> Attack:
    """The one PGD-20 of the kit: the registry's `pgd20` at the profile's eps and seed (`attack_overrides`).

    20 steps of 0.003 at 8/255 (the authors' step), scaled in proportion to eps elsewhere, random
    start from cfg['seed']. The per-epoch history (evaluate_epoch), Tab. 2, Tab. 6, the xi
    sweep, the seed checks, t-SNE and the notebooks all call this.
    """
    return build_attack("pgd20", model, **attack_overrides("pgd20", cfg))


def pgd20_step(cfg: Mapping) -> float:
    """The step size of `pgd20_attack` on profile cfg (0.003 at 8/255, in proportion to eps elsewhere)."""
    return attack_settings("pgd20", **attack_overrides("pgd20", cfg))["alpha"]


def records_path() -> Path:
    return runs_root() / "results" / "records.jsonl"


def load_records(path: Path | None = None) -> list[dict]:
    path = path or records_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def clear_cache(path: Path | None = None) -> None:
    (path or records_path()).unlink(missing_ok=True)


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A digest of tensors' shapes, dtypes and bytes (what a cached result was computed from)."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach()
        h.update(f"{tuple(t.shape)} {t.dtype};".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(model: nn.Module) -> str:
    """A digest of the model's state (weights and buffers): the content of the checkpoint it came from."""
    state = model.state_dict()
    return _key(sorted(state), tensor_digest(*state.values()))


@functools.cache
def code_digest() -> str:
    """The kit's version and a digest of the modules an attack's result depends on."""
    here = Path(__file__).parent
    files = sorted((here / "attacks").glob("*.py")) + [here / f for f in
                                                       ("checks.py", "evaluate.py", "models.py", "purify.py",
                                                        "runtime.py")]
    h = hashlib.sha1(__version__.encode())
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def _pct(mask: torch.Tensor) -> float:
    return 100 * mask.float().mean().item()


def run_attacks(model, x, y, attacks, xi: float, cfg: Mapping, training: str = "fgsm",
                overrides: dict | None = None, store: Path | None = None, progress: bool = True,
                allow_negative_xi: bool = False) -> list[dict]:
    """Accuracy of the bare model and of TPAP(model, xi) on each attack, as cached tidy records.

    A record is reused only when everything it was computed from is the same (module docstring).
    """
    xi = check_radius(xi, "xi", allow_negative=allow_negative_xi)
    if isinstance(attacks, str):
        raise TypeError(f"attacks = {attacks!r} is one string; pass a list of registry names, e.g. "
                        f"{attacks.split(',')!r}.")
    check_images(x)
    y = check_labels(y, len(x)).to(x.device)
    check_model_input(model, x)
    store = store or records_path()
    rt = runtime_for(cfg, x.device)
    cached = {r["key"]: r for r in load_records(store)}
    ckpt = Path(getattr(model, "checkpoint", "")).stem or "in-memory"
    meta = getattr(model, "meta", {}) or {}
    what = None if ckpt == "in-memory" else (weights_digest(model), tensor_digest(x, y), code_digest(),
                                               x.device.type, str(torch.__version__))
    out = []
    for name in tqdm(attacks, desc="attacks", disable=not progress):
        over = attack_overrides(name, cfg) | (overrides or {}).get(name, {})
        settings = attack_settings(name, **over)
        key = _key(ckpt, name, settings, len(y), xi, cfg.get("seed"), rt.attack_precision, what)
        if key in cached and what is not None:
            out.append(cached[key])
            continue
        t0 = time.perf_counter()
        with rt.attacking():
            x_adv = build_attack(name, model, **over)(rt.inputs(x), y)
        t_attack = time.perf_counter() - t0
        t1 = time.perf_counter()
        correct = robust_predictions(model, x_adv, y, xi=xi, runtime=rt, allow_negative_xi=allow_negative_xi)
        bare, tpap = correct["bare"], correct["tpap"]
        seconds_purify = time.perf_counter() - t1
        tpap_clean = robust_predictions(model, x, y, xi=xi, runtime=rt, allow_negative_xi=allow_negative_xi)["tpap"]
        same = (x_adv == x).flatten(1).all(1)
        zero = (x_adv == 0).flatten(1).all(1) & ~(x == 0).flatten(1).all(1)
        rec = {"key": key, "checkpoint": ckpt, "dataset": meta.get("dataset", cfg.get("dataset")),
               "model": meta.get("model", cfg.get("model")), "training": training,
               "profile": cfg.get("profile"), "attack": name, "implementation": attack_info(name),
               "settings": json.dumps(settings, sort_keys=True), "xi": xi, "n": len(y),
               "acc_bare": 100 * bare.float().mean().item(), "acc_tpap": 100 * tpap.float().mean().item(),
               "attack_success_bare": 100 * (~bare).float().mean().item(),
               "label": attack_label(name, settings, len(y)),
               "unchanged": _pct(same), "zero_images": _pct(zero), "acc_tpap_clean": _pct(tpap_clean),
               "acc_tpap_changed": _pct(tpap[~same]) if (~same).any() else None,
               "acc_tpap_unchanged": _pct(tpap[same]) if same.any() else None,
               "seconds_attack": t_attack, "seconds_purify": seconds_purify, "precision": rt.attack_precision,
               "correct_bare": pack_verdicts(bare.cpu()), "correct_tpap": pack_verdicts(tpap.cpu()),
               "correct_tpap_clean": pack_verdicts(tpap_clean.cpu()), "code": code_digest()}
        out.append(rec)
        if what is not None:
            store.parent.mkdir(parents=True, exist_ok=True)
            with store.open("a") as f:
                f.write(json.dumps(rec) + "\n")
    return out


def tidy(records: list[dict]):
    """Long form: one row per (model, training, defence, attack) with accuracy in % (and `unchanged`, %)."""
    import pandas as pd

    rows = []
    for r in records:
        base = {k: r[k] for k in ("dataset", "model", "training", "attack", "n", "implementation", "settings")}
        base["unchanged"] = r.get("unchanged")
        rows.append(base | {"defence": "none", "accuracy": r["acc_bare"]})
        rows.append(base | {"defence": "TPAP", "accuracy": r["acc_tpap"]})
    return pd.DataFrame(rows)
