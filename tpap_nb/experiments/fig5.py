"""Fig. 5: short FGSM-AT runs over the three levers of Sec. 4.2 (training eps, batch size, learning
rate), and sentences rendered from their records (notebook 03)."""
from __future__ import annotations

from tqdm.auto import tqdm

from ..runs import get_or_train
from ..train import robust_overfitting_test


def fig5_sweep(cfg: dict, eps_multiples=(1.0, 1.5, 2.0), batch_sizes=(32, 64, 128), lr_multiples=(0.2, 1.0, 2.0),
               epochs: int | None = None, progress: bool = True) -> list[dict]:
    """Fig. 5 (and Sec. 4.2's third lever): short FGSM-AT runs over the training eps (8, 12, 16/255 on
    paper), the batch size and the learning rate (multiples of the profile's).

    Returns one tidy record per (panel, setting, evaluated epoch), accuracies in %. Only the lever
    of a panel varies: the test attacks keep the profile's attack eps and purification the
    profile's xi, so every run is measured by the same yardstick (training eps, attack eps and xi
    are three settings). A setting equal to the profile's is the same run in every panel (one
    checkpoint). Records keep the keys panel, setting, epoch, eps, attack_eps, xi, batch_size, lr.
    """
    epochs = epochs or cfg["epochs"]
    scale = epochs / cfg["epochs"]
    base = cfg | {"epochs": epochs, "milestones": tuple(max(1, round(m * scale)) for m in cfg["milestones"]),
                  "eval_every": max(1, epochs // 6)}  # cfg's attack eps stays: only the training eps varies
    runs = [("training eps", f"{m:g} x eps", base | {"eps": cfg["eps"] * m}) for m in eps_multiples]
    runs += [("batch size", f"bs {b}", base | {"batch_size": b}) for b in batch_sizes]
    runs += [("learning rate", f"lr {cfg['lr'] * m:.3g}", base | {"lr": cfg["lr"] * m}) for m in lr_multiples]
    out = []
    for panel, label, run_cfg in tqdm(runs, desc="Fig. 5 sweep", disable=not progress):
        _, history, _ = get_or_train(run_cfg, progress=False)
        for h in history:
            if "test_clean" in h:
                out.append({"panel": panel, "setting": label, "epoch": h["epoch"], "eps": run_cfg["eps"],
                            "attack_eps": run_cfg["attack_eps"], "xi": run_cfg["xi"],
                            "batch_size": run_cfg["batch_size"], "lr": run_cfg["lr"],
                            **{k: 100 * v for k, v in h.items() if k.startswith(("train_", "test_", "tpap_"))
                               and k != "train_seconds"}})
    return out


def _settings(records: list[dict]) -> dict:
    """{(panel, setting): [records by epoch]}, in the order the sweep ran them."""
    out: dict = {}
    for r in records:
        out.setdefault((r["panel"], r["setting"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["epoch"]) for k, v in out.items()}


def label_leaking(records: list[dict], margin: float = 1.0) -> list[dict]:
    """Evaluated epochs where FGSM accuracy beats clean accuracy by more than `margin` points (train or test split).

    Label leaking (Kurakin et al. 2017): FGSM builds its step from the true label, so a network
    trained on FGSM examples can learn to read the perturbation as a hint of that label and score
    higher on FGSM inputs than on clean ones. One row per (panel, setting, epoch, split).
    """
    rows = []
    for r in records:
        for split in ("train", "test"):
            clean, adv = r.get(f"{split}_clean"), r.get(f"{split}_fgsm")
            if clean is not None and adv is not None and adv > clean + margin:
                rows.append({"panel": r["panel"], "setting": r["setting"], "epoch": r["epoch"], "split": split,
                             "clean": clean, "fgsm": adv})
    return rows


def leaking_sentence(records: list[dict], margin: float = 1.0) -> str:
    """Where label leaking shows in the sweep, in words, with its numbers (or that it does not show)."""
    rows = label_leaking(records, margin)
    if not rows:
        return ("**Label leaking.** At no evaluated epoch of any run does FGSM accuracy exceed clean accuracy by "
                f"more than {margin:g} point{'s' if margin != 1 else ''}, on the train or the test split.")
    worst: dict = {}
    for r in rows:
        key = (r["setting"], r["split"])
        if key not in worst or r["fgsm"] - r["clean"] > worst[key]["fgsm"] - worst[key]["clean"]:
            worst[key] = r
    shown = sorted(worst.values(), key=lambda r: r["clean"] - r["fgsm"])
    cases = "; ".join(f"`{r['setting']}` ({r['split']}, epoch {r['epoch']}): FGSM {r['fgsm']:.1f} % against "
                      f"clean {r['clean']:.1f} %" for r in shown[:6])
    more = f" (and {len(shown) - 6} more)" if len(shown) > 6 else ""
    return (f"**Label leaking shows in {len({r['setting'] for r in rows})} of {len(_settings(records))} runs**: "
            f"{cases}{more}. FGSM builds its step from the true label, and a network trained on FGSM "
            "examples learns to read that step as a hint of the label (Kurakin et al. 2017, 'label leaking'): "
            "its accuracy on FGSM inputs then exceeds its accuracy on the clean ones, and is no sign of "
            "robustness. The lower the clean accuracy, the more of the FGSM score the hint carries; "
            "the PGD-20 columns, whose steps follow the network's own gradient, are the check.")


def overfitting_sentence(records: list[dict]) -> str:
    """Which runs end robustly overfitted (Sec. 3.2's test at their last evaluated epoch), per lever, with numbers."""
    runs = _settings(records)
    lines = []
    for panel in dict.fromkeys(p for p, _ in runs):
        parts = []
        for (p, setting), recs in runs.items():
            if p != panel:
                continue
            last = recs[-1]
            test = robust_overfitting_test([{k: v / 100 if isinstance(v, float) and k.startswith(("train_", "test_"))
                                             else v for k, v in last.items()}])
            parts.append(f"`{setting}` {'overfits' if test['robust_overfit'] else 'does not overfit'} "
                         f"(train FGSM {last['train_fgsm']:.0f} %, train PGD-20 {last['train_pgd20']:.0f} %, "
                         f"test PGD-20 bare {last['test_pgd20']:.0f} % / TPAP {last['tpap_pgd20']:.0f} %)")
        lines.append(f"- **{panel}**: " + "; ".join(parts) + ".")
    epochs = sorted({recs[-1]["epoch"] for recs in runs.values()})
    at = f"epoch {epochs[0]}" if len(epochs) == 1 else "the last evaluated epoch"
    return (f"At {at}, Sec. 3.2's test of robust overfitting ({', '.join(test['checks'])}) reads:\n"
            + "\n".join(lines))
