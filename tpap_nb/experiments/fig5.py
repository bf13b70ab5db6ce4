"""Fig. 5: short FGSM-AT runs over the training eps and the batch size (notebook 03)."""
from __future__ import annotations

from tqdm.auto import tqdm

from ..config import attack_eps
from ..train import get_or_train


def fig5_sweep(cfg: dict, eps_multiples=(1.0, 1.5, 2.0), batch_sizes=(32, 64, 128), epochs: int | None = None,
               progress: bool = True) -> list[dict]:
    """Fig. 5: short FGSM-AT runs over the training eps (8, 12, 16/255 on paper) and the batch size.

    Returns one tidy record per (panel, setting, evaluated epoch). Only the training eps varies:
    the test attacks keep the profile's attack eps and purification the profile's xi, so every
    run is measured by the same yardstick (training eps, attack eps and xi are three settings).
    """
    epochs = epochs or cfg["epochs"]
    scale = epochs / cfg["epochs"]
    base = cfg | {"epochs": epochs, "milestones": tuple(max(1, round(m * scale)) for m in cfg["milestones"]),
                  "eval_every": max(1, epochs // 6)}
    base["attack_eps"] = attack_eps(cfg)
    runs = [("eps", f"{m:g} x eps", base | {"eps": cfg["eps"] * m}) for m in eps_multiples]
    runs += [("batch size", f"bs {b}", base | {"batch_size": b}) for b in batch_sizes]
    out = []
    for panel, label, run_cfg in tqdm(runs, desc="Fig. 5 sweep", disable=not progress):
        _, history, _ = get_or_train(run_cfg, progress=False)
        for h in history:
            if "test_clean" in h:
                out.append({"panel": panel, "setting": label, "epoch": h["epoch"], "eps": run_cfg["eps"],
                            "attack_eps": run_cfg["attack_eps"], "xi": run_cfg["xi"],
                            "batch_size": run_cfg["batch_size"],
                            **{k: 100 * v for k, v in h.items() if k.startswith(("train_", "test_", "tpap_"))
                               and k != "train_seconds"}})
    return out
