"""The GPU check: one command that measures what the kit claims about one GPU (issue 11, `make gpu-check`).

    python -m tpap_nb.experiments.gpu_check --out DIR        (or TPAP_GPU_CHECK_OUT=DIR)

In one run, inside a time budget (default 540 s, meant for one H100):
1. the bench on the device: float32 vs the fast path (`tpap_nb.runtime`: bf16 autocast + channels_last), ResNet-18;
2. a few epochs of `paper` FGSM-RO training (ResNet-18, all of CIFAR-10, batch 128), float32 and
   fast path, giving seconds per epoch and the projected 150-epoch time;
3. the `gpu` profile trained end to end (per-epoch history, checkpoint under DIR/runs);
4. a Tab. 2 subset on n test images: clean, FGSM, PGD-20 and AutoAttack, bare and TPAP (crafted on
   the bare model, then purified: Sec. 4.1.3).
It writes DIR/gpu_check.json and figures with provenance JSON under DIR/figures. It runs from the
source tree with a bare Python (torch >= 2.4, numpy, matplotlib, seaborn, pandas, tqdm; no install):
torchattacks is needed only for the AutoAttack column, and a torchattacks wheel found in
$TPAP_WHEELS or ./wheels is put on sys.path (it is pure Python); without it the column says
"skipped". CIFAR-10 comes from torchvision's pickles or, offline, from the JPEG copy under
TPAP_DATA/cifar10-jpeg (see tpap_nb.data). `--toy` runs every stage at a toy size (tests, CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from ..attacks.registry import attack_label, build_attack
from ..checks import TorchattacksMissing
from ..config import REPO, get_device, get_profile
from ..evaluate import attack_overrides, robust_predictions
from ..plots import plot_history, save_figure
from ..runs import fresh_model, get_or_train, run_data
from ..train import fit
from .bench import Shape, Timing, compare

TAB2_ATTACKS = ("clean", "fgsm", "pgd20", "aa")


def add_wheels_to_path(folders=None) -> list[str]:
    """Put torchattacks wheels (pure Python zips) on sys.path when torchattacks is not installed."""
    try:
        import torchattacks  # noqa: F401

        return []
    except ImportError:
        pass
    folders = folders or [os.environ.get("TPAP_WHEELS") or "", REPO / "wheels"]
    added = []
    for folder in folders:
        if folder and Path(folder).is_dir():
            for whl in sorted(Path(folder).glob("torchattacks-*.whl")):
                sys.path.insert(0, str(whl))
                added.append(str(whl))
    return added


class Budget:
    """Wall-clock budget of the whole check; a stage that would not fit is recorded as skipped."""

    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def stage_bench(dev, toy: bool) -> dict:
    """Stage 1: seconds per batch and ratios, float32 vs the fast path (`bench.compare`), ResNet-18 on this device."""
    shape = Shape("resnet18", 8 if toy else 64, 8 if toy else 128)
    timing = Timing(repeats=1 if toy else 3, warmup=1, min_time=0.0 if toy else 0.3)
    return compare(shape, timing, ("loop_fgsm_train", "kit_fgsm_train", "plain_train", "plain_infer", "tpap_infer"),
                   device=str(dev))


FLOAT32 = dict(precision="float32", attack_precision="float32", memory_format="contiguous")


def stage_paper_epochs(cfg: Mapping, data, dev, epochs: int) -> dict:
    """Stage 2: seconds per epoch of the `paper` FGSM-RO training (no evaluation), float32 and the fast path,
    projected to cfg's epochs (`paper`: 150)."""
    out = {}
    for name, fast in (("float32", FLOAT32), ("fast", {})):
        run = cfg | fast | {"epochs": epochs, "eval_every": 0}
        model = fresh_model(cfg, data)
        _sync(dev)
        hist = fit(model, data, run, progress=False)
        secs = [h["train_seconds"] for h in hist]
        steady = secs[1:] or secs  # the first epoch includes cuDNN autotuning
        per_epoch = sum(steady) / len(steady)
        out[name] = {"epochs_timed": epochs, "runtime": model.meta["runtime"],
                     "seconds_per_epoch": per_epoch, "all_epochs_seconds": secs,
                     "projected_seconds_150_epochs": per_epoch * cfg["epochs"], "n_train": len(data.y_train),
                     "batch_size": cfg["batch_size"]}
    return out


TOY_ATTACK_SETTINGS = {"aa": dict(steps=2, n_queries=20)}  # --toy only; labels show the reduced budget


def stage_tab2(model, data, cfg: Mapping, n: int, dev, toy: bool = False) -> list[dict]:
    """Stage 4: the Tab. 2 subset, bare and TPAP, on the first n (class-mixed) test images."""
    x, y = data.test_batch(n, device=dev)
    rows = []
    for name in TAB2_ATTACKS:
        t0 = time.perf_counter()
        try:
            settings = attack_overrides(name, cfg) | (TOY_ATTACK_SETTINGS.get(name, {}) if toy else {})
            attack = None if name == "clean" else build_attack(name, model, **settings)
        except TorchattacksMissing as err:
            rows.append({"attack": name, "skipped": str(err).splitlines()[0]})
            continue
        res = robust_predictions(model, x, y, attack, xi=cfg["xi"], cfg=cfg)
        _sync(dev)
        rows.append({"attack": name, "label": "clean" if attack is None else attack_label(name, attack.settings, n),
                     "n": n, "acc_bare": 100 * res["bare"].float().mean().item(),
                     "acc_tpap": 100 * res["tpap"].float().mean().item(),
                     "seconds": time.perf_counter() - t0, "settings": {} if attack is None else attack.settings})
    return rows


def plot_tab2(rows: list[dict], title: str):
    import matplotlib.pyplot as plt

    done = [r for r in rows if "acc_bare" in r]
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = range(len(done))
    for off, key, label in ((-0.2, "acc_bare", "bare FGSM-RO"), (0.2, "acc_tpap", "TPAP")):
        bars = ax.bar([i + off for i in xs], [r[key] for r in done], width=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(xs), [r["label"] for r in done], fontsize=7, rotation=10)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def run(out: Path, toy: bool = False, budget_s: float = 540.0, device: str = "auto", dataset: str | None = None,
        paper_epochs: int = 2, n_tab2: int = 1000) -> dict:
    """All four stages; returns (and writes to out/gpu_check.json) the record of what ran and took how long."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    env = {"TPAP_FIGURES": str(out / "figures"), "TPAP_RUNS": os.environ.get("TPAP_RUNS") or str(out / "runs")}
    path = list(sys.path)
    try:
        with _environment(env):
            return _run(out, toy, budget_s, device, dataset, paper_epochs, n_tab2)
    finally:
        sys.path[:] = path  # a torchattacks wheel put on the path for this run leaves with it


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables inside the block; the caller's values come back afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(out: Path, toy, budget_s, device, dataset, paper_epochs, n_tab2) -> dict:
    budget, dev = Budget(budget_s), get_device(device)
    wheels = add_wheels_to_path()
    rec = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "torch": str(torch.__version__), "python": platform.python_version(), "toy": toy,
           "budget_s": budget_s, "wheels_on_path": wheels, "stages": {}}
    toy_over = dict(dataset=dataset, width=8, epochs=1, n_train=32, n_eval=16, batch_size=16) if toy else \
        dict(dataset=dataset)
    paper = get_profile("paper", device=str(dev), **{k: v for k, v in toy_over.items() if k != "epochs"})
    gpu = get_profile("gpu", device=str(dev), **toy_over)

    def stage(name, need_s, fn):
        if budget.left() < need_s:
            rec["stages"][name] = {"skipped": f"{budget.left():.0f} s left of {budget_s:.0f}, stage needs ~{need_s} s"}
            return None
        t0 = time.perf_counter()
        result = fn()
        _sync(dev)
        rec["stages"][name] = {"seconds": time.perf_counter() - t0, "result": result}
        (out / "gpu_check.json").write_text(json.dumps(rec, indent=1, default=str))
        return result

    stage("bench", 0 if toy else 60, lambda: stage_bench(dev, toy))
    data = run_data(paper, device=dev)
    stage("paper_epochs", 0 if toy else 90, lambda: stage_paper_epochs(paper, data, dev, 1 if toy else paper_epochs))

    trained = {}  # the gpu model for stage 4, kept out of the JSON record

    def train_gpu():
        # same data set, n_train and seed as `paper`: the data loaded above is reused
        model, history, gdata = get_or_train(gpu, progress=not toy, data=data)
        trained.update(model=model, data=gdata)
        fig = plot_history(history, title=f"gpu profile: FGSM-RO ResNet-18 on {gdata.name}")
        save_figure(fig, "gpu_training_curves", gpu, device=dev, history=history)
        return {"history": history, "train_seconds": sum(h["train_seconds"] for h in history),
                "checkpoint": str(model.checkpoint)}

    stage("train_gpu_profile", 0 if toy else 120, train_gpu)
    if trained:
        model, gdata = trained["model"], trained["data"]
        n = min(16 if toy else n_tab2, len(gdata.y_test))

        def tab2():
            rows = stage_tab2(model, gdata, gpu, n, dev, toy)
            fig = plot_tab2(rows, f"gpu profile, n = {n}, eps = xi = {gpu['eps'] * 255:.0f}/255, {rec['device']}")
            save_figure(fig, "gpu_tab2_subset", gpu, device=dev, rows=rows)
            return rows

        stage("tab2_subset", 0 if toy else 30, tab2)
    rec["total_seconds"] = budget_s - budget.left()
    (out / "gpu_check.json").write_text(json.dumps(rec, indent=1, default=str))
    return rec


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("TPAP_GPU_CHECK_OUT"),
                   help="output folder (default $TPAP_GPU_CHECK_OUT)")
    p.add_argument("--toy", action="store_true", help="every stage at a toy size (for tests and CPUs)")
    p.add_argument("--budget-s", type=float, default=540.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default=None, help="override the profiles' data set (e.g. npz:FILE in tests)")
    p.add_argument("--paper-epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=1000, help="test images of the Tab. 2 subset")
    a = p.parse_args(argv)
    if not a.out:
        p.error("give --out DIR or set TPAP_GPU_CHECK_OUT")
    rec = run(Path(a.out), a.toy, a.budget_s, a.device, a.dataset, a.paper_epochs, a.n)
    for name, st in rec["stages"].items():
        print(f"{name}: " + (st["skipped"] if "skipped" in st else f"{st['seconds']:.1f} s"))
    print(f"total {rec['total_seconds']:.0f} s; record: {Path(a.out) / 'gpu_check.json'}")
    return rec


if __name__ == "__main__":
    main()
