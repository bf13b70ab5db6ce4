"""The paper's protocol as tidy records (Tab. 2, 6, 7): attacks crafted on the bare model, then purified.

One record per (checkpoint, defence, attack, settings): accuracy in %, the attack's success on
the bare model, n, seconds and the implementation that ran. Records are appended to
runs/results/records.jsonl and reused: a rerun skips what was computed for the same checkpoint,
attack settings, n and xi.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from .attacks import attack_info, attack_settings, build_attack, pgd
from .config import runs_root
from .evaluate import predict
from .purify import TPAP

PAPER_EPS = 8 / 255
EPS_KEYS = {"fgsm": ("eps",), "pgd20": ("eps", "alpha"), "pgd100": ("eps", "alpha"), "aa": ("eps",),
            "fwa": ("eps",), "tidim": ("eps", "alpha")}


def profile_overrides(name: str, cfg: dict) -> dict:
    """Paper settings moved to the profile's eps (steps keep their ratio to eps) and attack scale."""
    over = {"scale": cfg.get("attack_scale", 1.0)}
    if abs(cfg["eps"] - PAPER_EPS) > 1e-9:
        base = attack_settings(name)
        over |= {k: base[k] * cfg["eps"] / PAPER_EPS for k in EPS_KEYS.get(name, ())}
    return over


def records_path() -> Path:
    return runs_root() / "results" / "records.jsonl"


def load_records(path: Path | None = None) -> list[dict]:
    path = path or records_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_attacks(model, x, y, attacks, xi: float, cfg: dict, training: str = "fgsm",
                overrides: dict | None = None, store: Path | None = None, progress: bool = True) -> list[dict]:
    """Accuracy of the bare model and of TPAP(model, xi) on each attack, as cached tidy records."""
    store = store or records_path()
    cached = {r["key"]: r for r in load_records(store)}
    ckpt = Path(getattr(model, "checkpoint", "")).stem or "in-memory"
    meta = getattr(model, "meta", {}) or {}
    out = []
    for name in tqdm(attacks, desc="attacks", disable=not progress):
        over = profile_overrides(name, cfg) | (overrides or {}).get(name, {})
        settings = attack_settings(name, **over)
        key = _key(ckpt, name, settings, len(y), xi, cfg.get("seed"))
        if key in cached and ckpt != "in-memory":
            out.append(cached[key])
            continue
        t0 = time.perf_counter()
        x_adv = build_attack(name, model, **over)(x, y)
        t_attack = time.perf_counter() - t0
        bare = predict(model, x_adv) == y
        t1 = time.perf_counter()
        tpap = predict(TPAP(model, xi), x_adv) == y
        rec = {"key": key, "checkpoint": ckpt, "dataset": meta.get("dataset", cfg.get("dataset")),
               "model": meta.get("model", cfg.get("model")), "training": training,
               "profile": cfg.get("profile"), "attack": name, "implementation": attack_info(name),
               "settings": json.dumps(settings, sort_keys=True), "xi": xi, "n": len(y),
               "acc_bare": 100 * bare.float().mean().item(), "acc_tpap": 100 * tpap.float().mean().item(),
               "attack_success_bare": 100 * (~bare).float().mean().item(),
               "seconds_attack": t_attack, "seconds_purify": time.perf_counter() - t1}
        out.append(rec)
        if ckpt != "in-memory":
            store.parent.mkdir(parents=True, exist_ok=True)
            with store.open("a") as f:
                f.write(json.dumps(rec) + "\n")
    return out


def tidy(records: list[dict]):
    """Long form: one row per (model, training, defence, attack) with accuracy in %."""
    import pandas as pd

    rows = []
    for r in records:
        base = {k: r[k] for k in ("dataset", "model", "training", "attack", "n", "implementation", "settings")}
        rows.append(base | {"defence": "none", "accuracy": r["acc_bare"]})
        rows.append(base | {"defence": "TPAP", "accuracy": r["acc_tpap"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- sanity checks

def eps_sanity(model, x, y, eps_list, steps: int = 20, xi: float | None = None) -> list[dict]:
    """Accuracy under PGD (step eps/4) as eps grows: it must fall towards 0 (else gradients are masked)."""
    rows = []
    for eps in eps_list:
        x_adv = pgd(model, x, y, eps, eps / 4, steps) if eps > 0 else x
        row = {"eps": float(eps), "acc_bare": 100 * (predict(model, x_adv) == y).float().mean().item()}
        if xi is not None:
            row["acc_tpap"] = 100 * (predict(TPAP(model, xi), x_adv) == y).float().mean().item()
        rows.append(row)
    return rows


def iterations_sanity(model, x, y, eps: float, alpha: float, steps=(20, 100), margin: float = 5.0) -> dict:
    """An attack must not beat itself run with more iterations by more than `margin` points."""
    acc = {s: 100 * (predict(model, pgd(model, x, y, eps, alpha, s)) == y).float().mean().item() for s in steps}
    fewer, more = acc[steps[0]], acc[steps[-1]]
    return {"steps": list(steps), "accuracy": [acc[s] for s in steps], "ok": fewer >= more - margin}


def checks_table(eps_rows: list[dict], iters: dict, zero_tol: float = 5.0) -> list[dict]:
    """The two sanity checks of a table as rows: name, measured value, passed."""
    last = eps_rows[-1]
    return [
        {"check": f"bare accuracy at eps {last['eps']:.3g} <= {zero_tol}%", "value": last["acc_bare"],
         "passed": last["acc_bare"] <= zero_tol},
        {"check": "accuracy never rises with eps (bare)", "value": None,
         "passed": all(a["acc_bare"] >= b["acc_bare"] - 1 for a, b in zip(eps_rows, eps_rows[1:]))},
        {"check": f"PGD-{iters['steps'][0]} not stronger than PGD-{iters['steps'][-1]} by > 5 points",
         "value": iters["accuracy"][0] - iters["accuracy"][-1], "passed": iters["ok"]},
    ]


def profile_table(records: list[dict], column: str = "acc_tpap", attacks=None) -> dict:
    """{attack: accuracy} for one checkpoint's records, in the paper's column order."""
    by = {r["attack"]: r[column] for r in records}
    order = attacks or list(by)
    return {a: round(by[a], 2) for a in order if a in by}


def clear_cache(path: Path | None = None) -> None:
    (path or records_path()).unlink(missing_ok=True)


__all__ = ["run_attacks", "tidy", "eps_sanity", "iterations_sanity", "checks_table", "load_records",
           "profile_overrides", "profile_table", "clear_cache"]


# ----------------------------------------------------------------------------- tables and sweeps

def side_by_side(ours: dict[str, dict], paper: dict[str, dict], columns):
    """Rows 'paper: X' and 'ours: X' over the same columns (accuracy in %); missing cells stay empty."""
    import pandas as pd

    rows = {f"paper: {k}": {c: v.get(c) for c in columns} for k, v in paper.items()}
    rows |= {f"ours: {k}": {c: v.get(c) for c in columns} for k, v in ours.items()}
    return pd.DataFrame(rows).T[list(columns)].astype(float).round(2)


def fig5_sweep(cfg: dict, eps_multiples=(1.0, 1.5, 2.0), batch_sizes=(32, 64, 128), epochs: int | None = None,
               progress: bool = True) -> list[dict]:
    """Fig. 5: short FGSM-AT runs over the training eps (8, 12, 16/255 on paper) and the batch size.

    Returns one tidy record per (panel, setting, evaluated epoch). Purification uses the
    profile's xi/eps ratio at each eps; attacks use the run's own eps.
    """
    from .train import get_or_train

    epochs = epochs or cfg["epochs"]
    scale = epochs / cfg["epochs"]
    base = cfg | {"epochs": epochs, "milestones": tuple(max(1, round(m * scale)) for m in cfg["milestones"]),
                  "eval_every": max(1, epochs // 6)}
    runs = [("eps", f"{m:g} x eps", base | {"eps": cfg["eps"] * m, "xi": cfg["xi"] * m}) for m in eps_multiples]
    runs += [("batch size", f"bs {b}", base | {"batch_size": b}) for b in batch_sizes]
    out = []
    for panel, label, run_cfg in tqdm(runs, desc="Fig. 5 sweep", disable=not progress):
        _, history, _ = get_or_train(run_cfg, progress=False)
        for h in history:
            if "test_clean" in h:
                out.append({"panel": panel, "setting": label, "epoch": h["epoch"], "eps": run_cfg["eps"],
                            "batch_size": run_cfg["batch_size"],
                            **{k: 100 * v for k, v in h.items() if k.startswith(("train_", "test_", "tpap_"))
                               and k != "train_seconds"}})
    return out


def seed_check(cfg: dict, seeds=(0, 1, 2), xi_fractions=(0.5, 0.6, 0.7, 0.8, 1.0), progress: bool = True) -> list[dict]:
    """How robust is a profile's result to the seed? FGSM-RO runs per seed, bare and TPAP at several xi/eps.

    One record per (seed, xi): bare clean/FGSM/PGD-20 and TPAP clean/PGD-20 on the first n_eval
    test examples (PGD-20 with step eps/4, random start). This is how the `quick` setting was chosen.
    """
    import torch

    from .attacks import fgsm
    from .config import set_seed
    from .data import load_dataset
    from .evaluate import robust_accuracy
    from .models import build_model
    from .train import fit

    data = load_dataset(cfg["dataset"])
    x, y = data.test_batch(cfg["n_eval"])
    eps, out = cfg["eps"], []
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        set_seed(seed)
        model = build_model(cfg["model"], data.num_classes, data.in_channels, cfg["width"])
        history = fit(model, data, cfg | {"seed": seed, "eval_every": 0}, progress=False)
        torch.manual_seed(0)
        x_pgd = pgd(model, x, y, eps, eps / 4, 20)
        bare = {k: 100 * robust_accuracy(model, a, y)["bare"]
                for k, a in {"clean": x, "fgsm": fgsm(model, x, y, eps), "pgd20": x_pgd}.items()}
        for f in xi_fractions:
            tpap = {k: 100 * robust_accuracy(model, a, y, xi=f * eps)["tpap"] for k, a in
                    {"clean": x, "pgd20": x_pgd}.items()}
            out.append({"seed": seed, "xi/eps": f, "train_seconds": sum(h["train_seconds"] for h in history),
                        **{f"bare_{k}": v for k, v in bare.items()}, **{f"tpap_{k}": v for k, v in tpap.items()}})
    return out
