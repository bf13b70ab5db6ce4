"""The network a notebook needs: a checkpoint of yours, a shipped one, or a training run (`get_or_train`).

Shipped checkpoints live in the repository's `checkpoints/` folder: `NAME.pt` (a `fit` checkpoint with
half-precision weights, its metadata and per-epoch history, no optimiser state) and `NAME.json` beside it
(the run's settings, seed, commit, device and runtime, training time, its numbers on the test images, and
the file's sha256). NAME is the recipe's name without the fast path (`shipped_name`): a network trained
with bf16 on one machine is used on another that would train in float32. `get_or_train` uses one whose
settings match cfg exactly, after checking its hash and loading it with weights_only=True, unless
cfg['retrain'] is set; it says which happened (`model.provenance`).

    python -m tpap_nb.runs export --profile cifar --recipe fgsm      (after training it: make the shipped copy)
    python -m tpap_nb.runs export --profile cifar --source runs/probes/NAME.pt --eval-split validation
                                                                     (a trial of exactly the profile's settings)
    python -m tpap_nb.runs verify                                    (every shipped copy: hash, metadata, and
                                                                     its recorded clean accuracy, if data is here)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import REPO, get_device, get_profile, set_seed
from .data import Dataset, load_dataset
from .evaluate import evaluate_epoch, robust_accuracy
from .models import build_model
from .runtime import resolve, runtime_for
from .train import (
    FAST_KEYS,
    OPTIONAL_RUN_KEYS,
    RUN_KEYS,
    CheckpointError,
    checkpoint_path,
    fit,
    read_checkpoint,
    recipe_config,
    reevaluated,
    run_spec,
)

SHIPPED = REPO / "checkpoints"
SHIPPED_FORMAT = "tpap_nb-shipped-1"
# The settings a checkpoint's metadata must share with the run it is exported as (`export(..., source=)`).
SPEC_KEYS = {k: None for k in RUN_KEYS} | OPTIONAL_RUN_KEYS


def recipe_spec(cfg: Mapping) -> dict:
    """What a shipped network must match: the run's settings (`train.run_spec`) without the fast path."""
    return {k: v for k, v in run_spec(cfg).items() if k not in FAST_KEYS}


def shipped_name(cfg: Mapping) -> str:
    """dataset-model-recipe-epsN-profile-<hash of recipe_spec>: the name of a shipped checkpoint."""
    key = json.dumps(recipe_spec(cfg), sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    ds = cfg["dataset"].replace(":", "_").replace("/", "_")
    return f"{ds}-{cfg['model']}-{cfg['recipe']}-eps{cfg['eps'] * 255:.0f}-{cfg.get('profile', 'custom')}-{digest}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_record(cfg: Mapping, folder: Path | None = None) -> dict | None:
    """The JSON of the shipped checkpoint made with cfg's settings (after recipe_config), or None."""
    path = (folder or SHIPPED) / f"{shipped_name(cfg)}.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    want = json.loads(json.dumps(recipe_spec(cfg), default=str))
    if rec.get("format") != SHIPPED_FORMAT or rec.get("settings") != want:
        diff = {k: (rec.get("settings", {}).get(k), v) for k, v in want.items()
                if rec.get("settings", {}).get(k) != v}
        raise CheckpointError(f"{path} does not describe the settings it is named for {diff} (recorded, asked): "
                              "the shipped files were edited or damaged; restore them with git (git checkout "
                              "checkpoints/) or pass retrain=True.")
    return rec | {"json": str(path)}


def load_shipped(rec: dict, device: torch.device) -> tuple[torch.nn.Module, list[dict]]:
    """The network of a shipped record: hash checked, loaded with weights_only=True, weights back in float32."""
    pt = Path(rec["json"]).with_suffix(".pt")
    if not pt.is_file():
        raise CheckpointError(f"{rec['json']} names {pt.name}, which is missing: restore it with git "
                              "(git checkout checkpoints/; a clone without Git LFS has it) or pass retrain=True.")
    digest = sha256(pt)
    if digest != rec["sha256"]:
        raise CheckpointError(f"{pt} has sha256 {digest[:12]}..., not the {rec['sha256'][:12]}... its JSON records: "
                              "the file was changed or damaged. Restore it (git checkout checkpoints/) or pass "
                              "retrain=True.")
    state = read_checkpoint(pt)
    meta = state["meta"]
    model = build_model(meta["model"], meta["num_classes"], meta["in_channels"], meta["width"], pretrained=False)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    model.meta = meta
    return model.to(device).eval(), state["history"]


def run_data(cfg: Mapping, data: Dataset | None = None, device: torch.device | None = None) -> Dataset:
    """The data set a run of cfg uses: `data`, or cfg's data set loaded without its n_val held-out images
    (`validation_data`) and then its n_train subset (both drawn with cfg's seed), on `device` (default: cfg['device']
    resolved). Every training entry point starts here."""
    if data is None:
        data = load_dataset(cfg["dataset"])
        if cfg.get("n_val"):
            data = data.validation_split(cfg["n_val"], seed=cfg["seed"])[0]
        if cfg["n_train"]:
            data = data.subset(n_train=cfg["n_train"], seed=cfg["seed"])
    return data.to(device if device is not None else get_device(cfg["device"]))


def validation_data(cfg: Mapping, device: torch.device | None = None) -> Dataset:
    """The n_val training images a run of cfg holds out (drawn with its seed), as the test split of a Dataset
    (`.test_batch(n)`): for choosing settings such as xi without looking at the test images."""
    if not cfg.get("n_val"):
        raise ValueError(f"Profile {cfg.get('profile')!r} holds out no validation images (n_val = 0): set n_val "
                         "(e.g. get_profile(..., n_val=1000)) and train with it.")
    val = load_dataset(cfg["dataset"]).validation_split(cfg["n_val"], seed=cfg["seed"])[1]
    return val.to(device if device is not None else get_device(cfg["device"]))


def fresh_model(cfg: Mapping, data: Dataset, pretrained: bool = True) -> torch.nn.Module:
    """cfg's architecture for `data`, built after set_seed(cfg['seed']) (the same weights every time), on the
    data's device."""
    set_seed(cfg["seed"])
    return build_model(cfg["model"], data.num_classes, data.in_channels, cfg["width"],
                       pretrained=pretrained).to(data.x_train.device)


def get_or_train(cfg: Mapping, recipe: str = "fgsm", progress: bool = True, data: Dataset | None = None):
    """The network for (profile settings, recipe): your checkpoint when complete, else a shipped one whose
    settings match (unless cfg['retrain']), else trained (or resumed) into runs/checkpoints.

    Returns (model, history, data); `model.provenance` says which of the three happened, in words. Each
    notebook calls this, so it also runs alone.
    """
    cfg = recipe_config(cfg, recipe)
    device = get_device(cfg["device"])
    data = run_data(cfg, data, device)
    path = checkpoint_path(cfg)
    complete = path.exists() and len(read_checkpoint(path)["history"]) >= cfg["epochs"]
    rec = None if complete or cfg.get("retrain") else shipped_record(cfg)
    if rec is not None:
        model, history = load_shipped(rec, device)
        if model.meta["dataset"] != data.name:
            raise CheckpointError(f"{rec['json']} was trained on {model.meta['dataset']}, not {data.name}.")
        model.checkpoint = Path(rec["json"]).with_suffix(".pt")
        minutes = rec["train_seconds"] / 60
        model.provenance = (f"shipped checkpoint {model.checkpoint.name} (trained in {minutes:.0f} min on "
                            f"{rec['runtime_label']}, commit {rec['commit']}; sha256 checked); retrain=True trains "
                            "it here instead")
        history = reevaluated(model, data, cfg | {"eval_every": cfg["eval_every"] or 1}, history,
                              model.checkpoint.name, evaluate=evaluate_epoch)
        if progress:
            print(f"{recipe}: {model.provenance}")
        return model, history, data
    existed = path.exists()
    # A pretrained model needs its download only when no checkpoint will replace the weights.
    model = fresh_model(cfg, data, pretrained=not existed)
    t0 = time.perf_counter()
    history = fit(model, data, cfg, ckpt=path, progress=progress, evaluate=evaluate_epoch)
    model.checkpoint = path
    if complete:
        model.provenance = f"your checkpoint {path.name} (trained earlier)"
    else:
        model.provenance = (f"trained here ({'resumed, ' if existed else ''}{(time.perf_counter() - t0) / 60:.0f} min "
                            f"on {runtime_for(cfg, device).describe()}) into {path.name}")
    if progress:
        print(f"{recipe}: {model.provenance}")
    return model, history, data


# ----------------------------------------------------------------------------- export and verify

def export(cfg: Mapping, recipe: str, n_test: int = 1000, folder: Path | None = None, source: Path | None = None,
           eval_split: str = "test") -> dict:
    """Write the shipped copy of the complete checkpoint of (cfg, recipe): half-precision weights + JSON record.

    source: another complete checkpoint of exactly cfg's run settings (e.g. a scripts/cifar_probe.py trial, which
    holds out the same n_val images with the same seed), checked key by key; eval_split names the images its
    per-epoch history was measured on ("validation" for a probe's: its held-out images, not the test images),
    written into every evaluated epoch of the shipped history so the curves are labelled with what they show."""
    from .plots import git_commit

    folder = folder or SHIPPED
    cfg = recipe_config(cfg, recipe)
    src = Path(source) if source is not None else checkpoint_path(cfg)
    state = read_checkpoint(src)
    if len(state["history"]) < cfg["epochs"]:
        raise CheckpointError(f"{src} has {len(state['history'])} of {cfg['epochs']} epochs: train it first "
                              f"(tpap_nb.get_or_train(get_profile({cfg.get('profile')!r}), {recipe!r})).")
    made = {k: state["meta"].get(k, d) for k, d in SPEC_KEYS.items()}
    asked = json.loads(json.dumps({k: cfg.get(k, d) for k, d in SPEC_KEYS.items()}, default=str))
    if made != asked:
        diff = {k: (made[k], asked[k]) for k in SPEC_KEYS if made[k] != asked[k]}
        raise CheckpointError(f"{src} was trained with other settings than {cfg.get('profile')!r}'s {recipe} run: "
                              f"{diff} (made, asked).")
    history = [h | {"eval_split": eval_split} if "test_clean" in h else h for h in state["history"]]
    half = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    name = shipped_name(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / f"{name}.pt"
    meta = state["meta"] | {"weights": "float16", "profile": cfg.get("profile"), "source": src.name}
    torch.save({"format": "tpap_nb-checkpoint-1", "meta": meta, "history": history, "model": half}, pt)
    # The recorded numbers are those of the half-precision weights, measured as a notebook would.
    device = get_device(cfg.get("device", "auto"))
    model = build_model(state["meta"]["model"], state["meta"]["num_classes"], state["meta"]["in_channels"],
                        state["meta"]["width"], pretrained=False)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    model = model.to(device).eval()
    data = load_dataset(cfg["dataset"]).to(device)
    rt = runtime_for(cfg, device)
    with rt.scope():
        test = evaluate_epoch(model, data, cfg | {"n_eval": n_test})
    secs = [h["train_seconds"] for h in state["history"]]
    rec = {"format": SHIPPED_FORMAT, "name": name, "settings": json.loads(json.dumps(recipe_spec(cfg), default=str)),
           "profile": cfg.get("profile"), "recipe": recipe, "seed": cfg["seed"],
           "dataset_source": data.source.replace(f"{REPO}/", ""),  # no machine's absolute path in a shipped file
           "commit": git_commit(), "runtime": state["meta"].get("runtime"),
           "runtime_label": _label(state["meta"].get("runtime")), "versions": state["meta"].get("versions"),
           "epochs": len(state["history"]), "train_seconds": sum(secs), "median_epoch_seconds": statistics.median(secs),
           "source": src.name, "history_measured_on": eval_split,
           "test": {k: v for k, v in test.items() if not k.startswith("train_")}, "n_test": n_test,
           "measured_with": rt.describe(), "measured_precision": rt.attack_precision, "sha256": sha256(pt),
           "bytes": pt.stat().st_size}
    (folder / f"{name}.json").write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def _label(runtime: dict | None) -> str:
    if not runtime:
        return "an unrecorded device"
    fast = "bf16 autocast + channels_last" if runtime.get("precision") == "bf16" else "float32"
    threads = f", {runtime['threads']} threads" if runtime.get("device") == "cpu" else ""
    return f"{runtime.get('device')}{threads}, {fast}"


def shipped_records(folder: Path | None = None) -> list[dict]:
    return [json.loads(p.read_text()) | {"json": str(p)} for p in sorted((folder or SHIPPED).glob("*.json"))]


def verify(folder: Path | None = None, with_data: bool = True) -> list[dict]:
    """Every shipped checkpoint: its hash, its metadata against its name, and (with data) its clean accuracy."""
    out = []
    for rec in shipped_records(folder):
        model, _ = load_shipped(rec, torch.device("cpu"))
        row = {"name": rec["name"], "sha256": "ok", "recorded_clean": rec["test"]["test_clean"]}
        if with_data:
            data = load_dataset(model.meta["dataset"])
            x, y = data.test_batch(rec["n_test"])
            precision = rec.get("measured_precision", "float32")
            rt = resolve("cpu", precision=precision, attack_precision=precision)
            row["clean_now"] = robust_accuracy(model, x, y, runtime=rt)["bare"]
            row["data_source"] = data.source
        out.append(row)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tpap_nb.runs", description="Shipped checkpoints: export and verify.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="make the shipped copy of a trained checkpoint")
    e.add_argument("--profile", required=True)
    e.add_argument("--recipe", default="fgsm")
    e.add_argument("--n-test", type=int, default=1000)
    e.add_argument("--source", type=Path, default=None, help="another checkpoint of exactly these settings "
                   "(default: the profile's own, runs/checkpoints/)")
    e.add_argument("--eval-split", default="test", help="what its per-epoch history measured: test | validation")
    v = sub.add_parser("verify", help="check every shipped checkpoint")
    v.add_argument("--no-data", action="store_true", help="hash and metadata only")
    a = p.parse_args(argv)
    if a.cmd == "export":
        rec = export(get_profile(a.profile), a.recipe, a.n_test, source=a.source, eval_split=a.eval_split)
        print(json.dumps({k: rec[k] for k in ("name", "sha256", "bytes", "train_seconds", "test")}, indent=1))
    else:
        for row in verify(with_data=not a.no_data):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
