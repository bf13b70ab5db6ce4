"""Fig. 5: short FGSM-AT runs over the three levers of Sec. 4.2 (training eps, batch size, learning
rate), and where label leaking shows in them (notebook 03; their sentences: `report.benchmark`)."""
from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm

from ..runs import get_or_train


def fig5_sweep(cfg: Mapping, eps_multiples=(1.0, 1.5, 2.0), batch_sizes=(32, 64, 128), lr_multiples=(0.2, 1.0, 2.0),
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
