"""Issue 20: every bad input, crashed write and stale cache is one clear error (its type, and a message naming
the bad value or file) or a fresh result, never a number that is quietly wrong."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fresh_cnn

import tpap_nb as tp
from tpap_nb import data as D
from tpap_nb import models
from tpap_nb import train as T
from tpap_nb.attacks import ATTACKS, build_attack, fgsm, pgd
from tpap_nb.data import folders
from tpap_nb.evaluate import load_records, robust_accuracy, robust_predictions, run_attacks
from tpap_nb.experiments import table3 as t3
from tpap_nb.experiments.adaptive import DefendedClassifier, eps_sweep, evaluate_adaptive, pgd_adaptive

NAN, INF = float("nan"), float("inf")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def xy():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:16], dtype=torch.float32).unsqueeze(1) / 16, torch.tensor(d.target[:16])


@pytest.fixture
def net():
    return fresh_cnn(0, width=4)  # weights require grad, as a model from get_or_train


# ------------------------------------------------------------------ radii, step sizes, counts
BAD_RADII = [(-0.3, "is negative"), (NAN, "not a finite number"), (INF, "not a finite number"),
             (8, r"did you mean 8/255"), (5.0, r"did you mean 5/255")]


@pytest.mark.parametrize("value, match", BAD_RADII)
def test_bad_xi_is_refused_by_purify_tpap_and_the_evaluation(net, xy, value, match):
    x, y = xy
    calls = {"purify": lambda: tp.purify(net, x, value), "TPAP": lambda: tp.TPAP(net, value),
             "robust_predictions": lambda: robust_predictions(net, x, y, xi=value),
             "run_attacks": lambda: run_attacks(net, x, y, ["fgsm"], value, tp.get_profile("smoke"), progress=False),
             "DefendedClassifier": lambda: DefendedClassifier(net, value)}
    for where, call in calls.items():
        with pytest.raises(ValueError, match=match) as err:
            call()
        assert f"xi = {value:g}" in str(err.value) or f"xi = {value}" in str(err.value), where


def test_a_negative_xi_needs_the_explicit_flag(net, xy):
    x, y = xy
    with pytest.raises(ValueError, match="allow_negative_xi=True"):
        tp.purify(net, x, -0.1)
    down = tp.purify(net, x, -0.1, allow_negative_xi=True)
    up = tp.purify(net, x, 0.1)
    assert not torch.equal(down, up)
    assert torch.equal(tp.TPAP(net, -0.1, allow_negative_xi=True)(x), net(down))
    assert set(robust_accuracy(net, x, y, xi=-0.1, allow_negative_xi=True)) == {"bare", "tpap"}
    assert tp.get_profile("smoke", xi=-0.1, allow_negative_xi=True)["xi"] == -0.1


@pytest.mark.parametrize("value, match", BAD_RADII)
def test_bad_eps_is_refused_when_an_attack_is_built_and_by_fgsm_and_pgd(net, xy, value, match):
    x, y = xy
    for name in ("fgsm", "pgd20", "pgd100", "aa", "fwa", "tidim", "dim"):
        with pytest.raises(ValueError, match=match) as err:
            build_attack(name, net, eps=value)
        assert f"Attack {name!r}: eps = " in str(err.value)
    with pytest.raises(ValueError, match=match):
        build_attack("pgd20", net, alpha=value)
    for name, call in (("eps", lambda: fgsm(net, x, y, value)), ("eps", lambda: pgd(net, x, y, value, 0.01, 2)),
                       ("alpha", lambda: pgd(net, x, y, 0.1, value, 2))):
        with pytest.raises(ValueError, match=match) as err:
            call()
        assert str(err.value).startswith(f"{name} = {value:g}") or str(err.value).startswith(f"{name} = {value}")


@pytest.mark.parametrize("steps, error, match", [(-1, ValueError, "steps = -1 must be >= 0"),
                                                 (2.5, TypeError, "steps = 2.5 is a float"),
                                                 ("20", TypeError, "steps = '20' is a str")])
def test_bad_steps_are_refused_by_pgd_called_directly(net, xy, steps, error, match):
    """pgd() itself (not only the registry): steps = -1 used to run no step and return x, counted as robust."""
    x, y = xy
    with pytest.raises(error, match=match):
        pgd(net, x, y, 0.1, 0.01, steps)
    assert torch.equal(pgd(net, x, y, 0.1, 0.01, 0, random_start=False), x)  # zero steps stays possible here


@pytest.mark.parametrize("value", ["0.1", "8/255", [0.1]])
def test_xi_of_the_wrong_type_is_refused_where_it_is_given(net, xy, value):
    """A string xi used to be accepted by TPAP and DefendedClassifier (float('0.1'), or a failure when called)."""
    x, y = xy
    calls = {"purify": lambda: tp.purify(net, x, value), "TPAP": lambda: tp.TPAP(net, value),
             "robust_accuracy": lambda: robust_accuracy(net, x, y, xi=value),
             "DefendedClassifier": lambda: DefendedClassifier(net, value)}
    for where, call in calls.items():
        with pytest.raises(TypeError, match=r"is a (str|list); it must be a number") as err:
            call()
        assert str(err.value).startswith(f"xi = {value!r} is a"), where


@pytest.mark.parametrize("settings, error, match", [
    ({"steps": -1}, ValueError, "steps = -1 must be >= 1"),
    ({"steps": 0}, ValueError, "steps = 0 must be >= 1"),
    ({"steps": 2.5}, TypeError, "steps = 2.5 is a float"),
    ({"steps": "20"}, TypeError, "steps = '20' is a str"),
    ({"eps": "8/255"}, TypeError, "eps = '8/255' is a str"),
    ({"eps": None}, TypeError, "eps = None"),
    ({"seed": "0"}, TypeError, "seed = '0' is a str"),
    ({"seed": 1.5}, TypeError, "seed = 1.5 is a float"),
    ({"batch_size": 0}, ValueError, "batch_size = 0 must be >= 1"),
    ({"random_start": "yes"}, TypeError, "random_start = 'yes'"),
])
def test_bad_settings_are_refused_when_the_attack_is_built(net, settings, error, match):
    with pytest.raises(error, match=match):
        build_attack("pgd20", net, **settings)


@pytest.mark.parametrize("name, settings, match", [
    ("cw2", {"c": -1.0}, "c = -1 must be a finite number > 0"),
    ("cw2", {"lr": NAN}, "lr = nan"),
    ("cw2", {"binary_search_steps": 0}, "binary_search_steps = 0"),
    ("cw2_l2", {"budget": -0.5}, "budget = -0.5"),
    ("ddn", {"levels": 1}, "levels = 1 must be >= 2"),
    ("ddn", {"gamma": 1.5}, "gamma = 1.5"),
    ("aa", {"n_queries": -5}, "n_queries = -5"),
    ("aa", {"norm": "L3"}, "norm = 'L3'"),
    ("sta", {"tau": INF}, "tau = inf"),
    ("sta_flow1", {"max_flow": NAN}, "max_flow = nan"),
    ("tidim", {"diversity_prob": 2}, "diversity_prob = 2"),
    ("tidim", {"resize_rate": 1.0}, "resize_rate = 1"),
    ("dim", {"prob": -0.1}, "prob = -0.1"),
    ("fwa", {"kernel_size": 0}, "kernel_size = 0"),
])
def test_every_attacks_own_constants_are_checked(net, name, settings, match):
    with pytest.raises(ValueError, match=rf"Attack '{name}': {match}"):
        build_attack(name, net, **settings)


@pytest.mark.parametrize("override, match", [
    ({"eps": NAN}, "eps=nan must be a finite number"), ({"xi": INF}, "xi=inf must be a finite number"),
    ({"lr": NAN}, "lr=nan must be a finite number"), ({"attack_eps": -INF}, "attack_eps=-inf"),
    ({"eps": 8}, r"eps=8 must be in \[0, 1\].*did you mean 8/255"),
    ({"pgd_alpha": 2.0}, "pgd_alpha=2.0 must be in"),
])
def test_get_profile_refuses_nan_inf_and_forgotten_255(override, match):
    with pytest.raises(ValueError, match=match):
        tp.get_profile("smoke", **override)


# ------------------------------------------------------------------ attacking the TPAP wrapper
@pytest.mark.parametrize("frozen", [False, True])
def test_every_attack_refuses_the_tpap_wrapper_up_front(net, xy, frozen):
    """With weights that require grad, ten attacks used to raise torch's autograd error and cw2 returned x
    unchanged (counted as robust); frozen, some attacks said so. Now all refuse before running."""
    x, y = xy
    net.requires_grad_(not frozen)
    for name in ATTACKS:
        with pytest.raises(RuntimeError, match="Attack the undefended model") as err:
            build_attack(name, tp.TPAP(net, 0.1))(x, y)
        msg = str(err.value)
        assert f"Attack {name!r}" in msg and "the logits of TPAP do not depend on x" in msg
        assert "experiments.adaptive.DefendedClassifier" in msg


def test_attacking_the_pipeline_through_bpda_or_exact_works_with_the_registry(net, xy):
    x, y = xy
    for mode in ("bpda", "exact"):
        target = DefendedClassifier(net, 0.1, grad=mode)
        x_adv = build_attack("pgd20", target, eps=0.2, alpha=0.05, steps=3)(x, y)
        assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and not torch.equal(x_adv, x)
        x_cw = build_attack("cw2", target, steps=3, binary_search_steps=1, lr=0.1)(x, y)
        assert x_cw.shape == x.shape


@pytest.mark.parametrize("call, error, match", [
    (lambda net, x, y: DefendedClassifier(net, 0.1, tau=NAN), ValueError, "tau = nan must be a finite number > 0"),
    (lambda net, x, y: DefendedClassifier(net, 0.1, tau="0.5"), TypeError, "tau = '0.5' is a str"),
    (lambda net, x, y: DefendedClassifier(net, 0.1, grad="sign"), ValueError, "grad='sign' is not a gradient mode"),
    (lambda net, x, y: pgd_adaptive(DefendedClassifier(net, 0.1), x, y, 0.1, steps=-1), ValueError,
     "steps = -1 must be >= 1"),
    (lambda net, x, y: pgd_adaptive(DefendedClassifier(net, 0.1), x, y, 0.1, restarts=0), ValueError,
     "restarts = 0 must be >= 1"),
    (lambda net, x, y: pgd_adaptive(DefendedClassifier(net, 0.1), x, y, 0.1, seed="0"), TypeError,
     "seed = '0' is a str"),
    (lambda net, x, y: pgd_adaptive(DefendedClassifier(net, 0.1), x, y, 8), ValueError, "eps = 8: .*8/255"),
    (lambda net, x, y: evaluate_adaptive(net, x, y, 0.1, 0.1, attacks=("clean",), scale=0), ValueError,
     "scale = 0 must be a finite number > 0"),
    (lambda net, x, y: evaluate_adaptive(net, x, y, 0.1, 0.1, attacks=("clean",), steps=-1), ValueError,
     "steps = -1 must be >= 1"),
    (lambda net, x, y: evaluate_adaptive(net, x, y, 0.1, 0.1, attacks=("clean",), n_queries=2.5), TypeError,
     "n_queries = 2.5 is a float"),
    (lambda net, x, y: evaluate_adaptive(net, x, y, 0.1, 0.1, attacks=("clean",), tau=-1), ValueError,
     "tau = -1 must be"),
    (lambda net, x, y: eps_sweep(net, x, y, 0.1, [0.1], steps=-1), ValueError, "steps = -1 must be >= 1"),
    (lambda net, x, y: eps_sweep(net, x, y, 0.1, [0.1, -0.2]), ValueError, "eps = -0.2 is negative"),
])
def test_the_adaptive_attacks_check_their_settings_on_entry(net, xy, call, error, match):
    """The pipeline's own attacks (notebook 07): steps = -1 used to run one step (or none) without a word."""
    x, y = xy
    with pytest.raises(error, match=match):
        call(net, x, y)


# ------------------------------------------------------------------ labels, channels, dtypes
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.int8])
def test_integer_labels_of_any_dtype_are_accepted(net, xy, dtype):
    x, y = xy
    y2 = y.to(dtype)
    assert torch.equal(fgsm(net, x, y2, 0.1), fgsm(net, x, y, 0.1))
    plain = dict(eps=0.1, alpha=0.03, steps=2, random_start=False)
    assert torch.equal(pgd(net, x, y2, **plain), pgd(net, x, y, **plain))
    for name in ("pgd20", "cw2", "ddn", "dim", "sta_flow1"):
        a = build_attack(name, net, steps=2)(x, y2)
        assert torch.equal(a, build_attack(name, net, steps=2)(x, y)), name
    assert robust_accuracy(net, x, y2, xi=0.1) == robust_accuracy(net, x, y, xi=0.1)


@pytest.mark.parametrize("labels, error, match", [
    (lambda y: y.float(), TypeError, "dtype torch.float32; class labels must be integers"),
    (lambda y: y.bool(), TypeError, "dtype torch.bool"),
    (lambda y: y[:3], ValueError, r"16 class labels .* shape \(3,\)"),
    (lambda y: y.tolist(), TypeError, "got list"),
])
def test_bad_labels_name_their_dtype_or_shape(net, xy, labels, error, match):
    x, y = xy
    for call in (lambda: fgsm(net, x, labels(y), 0.1), lambda: build_attack("pgd20", net)(x, labels(y)),
                 lambda: robust_accuracy(net, x, labels(y), xi=0.1)):
        with pytest.raises(error, match=match):
            call()


def test_wrong_channels_or_model_dtype_is_one_clear_error_wherever_model_and_images_meet(net, xy):
    x, y = xy
    rgb = x.expand(-1, 3, -1, -1).contiguous()
    calls = {"purify": lambda x: tp.purify(net, x, 0.1), "attack": lambda x: build_attack("fgsm", net)(x, y),
             "robust_predictions": lambda x: robust_predictions(net, x, y, xi=0.1),
             "run_attacks": lambda x: run_attacks(net, x, y, ["fgsm"], 0.1, tp.get_profile("smoke"), progress=False),
             "fgsm": lambda x: fgsm(net, x, y, 0.1)}
    for call in calls.values():
        with pytest.raises(ValueError, match=r"x has 3 channel\(s\).*takes 1"):
            call(rgb)
    net.double()
    for call in calls.values():
        with pytest.raises(TypeError, match="x has dtype torch.float32 but Classifier's weights are torch.float64"):
            call(x)


# ------------------------------------------------------------------ checks at entry only
def test_no_scan_per_attack_step_or_training_step(net, xy, digits, monkeypatch):
    """check_images / check_labels scan on entry only: the count of scans does not grow with the steps."""
    x, y = xy
    real, calls = torch.aminmax, {"n": 0}

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(torch, "aminmax", counting)
    counts = []
    for steps in (2, 12):
        calls["n"] = 0
        build_attack("pgd20", DefendedClassifier(net, 0.1), steps=steps)(x, y)
        counts.append(calls["n"])
    assert counts[0] == counts[1] and counts[0] <= 3, counts
    cfg = tp.get_profile("smoke", epochs=1, eval_every=0, width=4, batch_size=16)
    calls["n"] = 0
    tp.fit(tp.build_model("small_cnn", 10, 1, width=4), digits.subset(n_train=64), cfg, progress=False)
    assert calls["n"] == 0  # 4 training steps, each an FGSM: no scan of the uint8 data set's batches


# ------------------------------------------------------------------ the attack-record cache
def test_run_attacks_cache_follows_the_examples_the_weights_and_the_code(net, xy, tmp_path, monkeypatch):
    x, y = xy
    net.checkpoint = tmp_path / "net.pt"  # a named checkpoint: its records are stored and reused
    store, cfg = tmp_path / "records.jsonl", tp.get_profile("smoke")
    first = run_attacks(net, x, y, ["fgsm"], 0.1, cfg, store=store, progress=False)
    again = run_attacks(net, x, y, ["fgsm"], 0.1, cfg, store=store, progress=False)
    assert again == first and len(load_records(store)) == 1  # same examples, weights, code: reused
    other = run_attacks(net, x.flip(3), y, ["fgsm"], 0.1, cfg, store=store, progress=False)
    assert other[0]["key"] != first[0]["key"] and len(load_records(store)) == 2  # other examples: fresh
    relabelled = run_attacks(net, x, y.roll(1), ["fgsm"], 0.1, cfg, store=store, progress=False)
    assert relabelled[0]["key"] not in {first[0]["key"], other[0]["key"]}
    with torch.no_grad():
        net.fc.bias.add_(0.5)  # other weights behind the same checkpoint name
    changed = run_attacks(net, x, y, ["fgsm"], 0.1, cfg, store=store, progress=False)
    assert changed[0]["key"] != first[0]["key"] and len(load_records(store)) == 4
    assert first[0]["code"].startswith(tp.__version__ + "+")
    import tpap_nb.evaluate as E

    monkeypatch.setattr(E, "code_digest", lambda: tp.__version__ + "+an-attack-fixed")  # the kit's code changed
    fixed = run_attacks(net, x, y, ["fgsm"], 0.1, cfg, store=store, progress=False)
    assert fixed[0]["key"] != changed[0]["key"] and fixed[0]["code"].endswith("an-attack-fixed")
    assert len(load_records(store)) == 5


# ------------------------------------------------------------------ checkpoints
def _train_ckpt(digits, path, width=4, epochs=1):
    cfg = tp.get_profile("smoke", epochs=epochs, width=width, eval_every=0, batch_size=32)
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=width)
    tp.fit(model, digits.subset(n_train=64), cfg, ckpt=path, progress=False)
    return cfg, model


@pytest.fixture(scope="module")
def good_ckpt(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    _train_ckpt(digits, path)
    return path


def _bad_files(good: Path, folder: Path) -> dict:
    raw = good.read_bytes()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "half.pt").write_bytes(raw[: len(raw) // 2])
    (folder / "dir.pt").mkdir()
    torch.save({"format": "tpap_nb-checkpoint-1", "model": {}}, folder / "nometa.pt")
    torch.save({"format": "tpap_nb-checkpoint-1", "meta": {"dataset": "digits"}, "history": [], "model": {}},
               folder / "thinmeta.pt")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    torch.save([1, 2, 3], folder / "list.pt")
    return {"empty.pt": "is empty (0 bytes)", "half.pt": "truncated or damaged", "dir.pt": "is a directory",
            "nometa.pt": "has no 'meta'", "thinmeta.pt": "its meta lacks 'model'",
            "random.pt": "not a loadable tpap_nb checkpoint", "list.pt": "not a tpap_nb checkpoint"}


def test_every_unreadable_checkpoint_is_a_checkpoint_error_naming_it(good_ckpt, digits, tmp_path):
    for name, match in _bad_files(good_ckpt, tmp_path).items():
        path = tmp_path / name
        for call in (T.read_checkpoint, tp.load_model, lambda p: _train_ckpt(digits, p)):  # the last: fit resuming
            with pytest.raises(tp.CheckpointError, match=re.escape(match)) as err:
                call(path)
            assert str(path) in str(err.value) and ("Delete" in str(err.value) or "delete" in str(err.value)
                                                    or "remove" in str(err.value)), (name, str(err.value))


def test_a_resumed_checkpoint_is_checked_against_the_model_itself(good_ckpt, digits, tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(good_ckpt.read_bytes())
    cfg = tp.get_profile("smoke", epochs=1, width=4, eval_every=0, batch_size=32)  # cfg's width matches
    wider = tp.build_model("small_cnn", 10, 1, width=8)  # the model does not
    with pytest.raises(tp.CheckpointError, match=r"another network .*saved \(4, 1, 3, 3\), this model \(8, 1, 3, 3\)"):
        tp.fit(wider, digits.subset(n_train=64), cfg, ckpt=path, progress=False)
    weights_only = tmp_path / "w.pt"
    state = T.read_checkpoint(good_ckpt)
    torch.save({k: state[k] for k in ("format", "meta", "history", "model")}, weights_only)
    with pytest.raises(tp.CheckpointError, match="no optimizer, scheduler, generator state"):
        _train_ckpt(digits, weights_only)
    assert tp.load_model(weights_only)[0].fc.out_features == 10  # loading it is fine


def test_save_checkpoint_fsyncs_a_temp_file_of_its_own_then_renames(good_ckpt, tmp_path, monkeypatch):
    synced, names = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: names.append(Path(a).name) or real_replace(a, b))
    model = fresh_cnn(0, width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    for _ in range(2):
        T.save_checkpoint(tmp_path / "s.pt", model, opt, sched, {"model": "small_cnn", "dataset": "d",
                          "num_classes": 10, "in_channels": 1, "width": 4}, [], torch.Generator())
    assert len(synced) >= 2 and names[0] != names[1]
    assert all(n.startswith(f"s.pt.{os.getpid()}-") and n.endswith(".tmp") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]
    assert T.read_checkpoint(tmp_path / "s.pt")["meta"]["width"] == 4


def test_a_stale_lock_and_temp_files_of_a_dead_writer_are_taken_over(digits, tmp_path):
    path = tmp_path / "run.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "run.pt.lock").write_text(json.dumps({"pid": pid, "host": "here", "since": "earlier"}))
    (tmp_path / f"run.pt.{pid}-deadbeef.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "run.pt.tmp").write_bytes(b"an old-style temp file")
    _train_ckpt(digits, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # lock released, stale temp files gone


def test_a_held_lock_says_in_progress_and_who_holds_it(tmp_path):
    held = T.RunLock(tmp_path / "r.pt").acquire()
    try:
        with pytest.raises(tp.CheckpointError, match=rf"r.pt is in progress: process {os.getpid()} on "):
            T.RunLock(tmp_path / "r.pt", wait=False).acquire()
    finally:
        held.release()
    T.RunLock(tmp_path / "r.pt", wait=False).acquire().release()


CHILD = textwrap.dedent("""
    import os, sys, time, torch
    import tpap_nb as tp
    real_save = torch.save
    def slow_save(*a, **k):  # a ResNet-sized write: slow enough for two runs to overlap
        time.sleep(float(sys.argv[2]))
        while len(sys.argv) > 3 and not os.path.exists(sys.argv[3]):  # held until the test opens the gate
            time.sleep(0.05)
        return real_save(*a, **k)
    torch.save = slow_save
    cfg = tp.get_profile("smoke", epochs=3, width=4, eval_every=0, batch_size=32)
    data = tp.load_dataset("digits").subset(n_train=64)
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=4)
    hist = tp.fit(model, data, cfg, ckpt=sys.argv[1], progress=False)
    print("epochs", [h["epoch"] for h in hist], flush=True)
""")


def _child(path, delay, gate=None, out=None):
    """A training process into `path`; its output goes to the file `out` (else nowhere)."""
    args = [sys.executable, "-c", CHILD, str(path), str(delay)] + ([str(gate)] if gate else [])
    with open(out or os.devnull, "w") as stdout:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=stdout, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _wait_for(cond, timeout=120.0):
    import time

    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_training_into_one_checkpoint_do_not_collide(tmp_path):
    """The first run's checkpoint write is held (a slow write) until the second run has reached the lock."""
    path, gate, logs = tmp_path / "run.pt", tmp_path / "gate", tmp_path / "logs"
    logs.mkdir()
    first = _child(path, 0.0, gate, logs / "first.txt")
    _wait_for(lambda: (tmp_path / "run.pt.lock").exists() or first.poll() is not None)
    second = _child(path, 0.0, None, logs / "second.txt")
    _wait_for(lambda: "waiting" in (logs / "second.txt").read_text() or second.poll() is not None)
    gate.write_text("go")
    for proc in (first, second):
        proc.wait(timeout=300)
    out = [(logs / f"{n}.txt").read_text() for n in ("first", "second")]
    assert first.returncode == 0 and second.returncode == 0, out
    assert "epochs [1, 2, 3]" in out[0] and "epochs [1, 2, 3]" in out[1]
    assert f"run.pt: process {first.pid} on " in out[1] and "is training into it; waiting" in out[1]
    assert [h["epoch"] for h in T.read_checkpoint(path)["history"]] == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate", "logs", "run.pt"]  # no lock, no temp file


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_bit_identical_weights(digits, tmp_path):
    """A run killed (SIGKILL, during a slow checkpoint write) leaves its last good checkpoint and a lock no one
    holds; the next run takes the lock over and ends with exactly the weights of an uninterrupted run."""
    path = tmp_path / "run.pt"
    child = _child(path, 1.5)
    _wait_for(lambda: path.exists() or child.poll() is not None)  # epoch 1 saved; epoch 2's write sleeping
    child.kill()
    child.wait()
    assert len(T.read_checkpoint(path)["history"]) in (1, 2)
    cfg = tp.get_profile("smoke", epochs=3, width=4, eval_every=0, batch_size=32)
    data = tp.load_dataset("digits").subset(n_train=64)
    tp.set_seed(0)
    resumed = tp.build_model("small_cnn", 10, 1, width=4)
    tp.fit(resumed, data, cfg, ckpt=path, progress=False)
    tp.set_seed(0)
    ref = tp.build_model("small_cnn", 10, 1, width=4)
    tp.fit(ref, data, cfg, progress=False)
    for (k, a), b in zip(resumed.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


# ------------------------------------------------------------------ image folders and zips
def _png(rng, size=8, mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _tree(folder: Path, per_class=2, size=8, zipped=False, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        files = {f"{c}/{i}.png": _png(rng, size) for c in ("cat", "dog") for i in range(per_class)}
        if zipped:
            folder.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
                for name, raw in files.items():
                    zf.writestr(name, raw)
        else:
            for name, raw in files.items():
                (folder / split / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / split / name).write_bytes(raw)
    return folder


def _bump(path: Path, raw: bytes) -> None:
    st = path.stat() if path.exists() else None
    path.write_bytes(raw)
    if st is not None:  # a later mtime even where the clock's step is coarse
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_the_folder_cache_sees_an_edited_and_an_added_image(tmp_path):
    folder = _tree(tmp_path / "imgs")
    name = f"folder:{folder}"
    first = tp.load_dataset(name)
    assert list((tmp_path / "data" / "cache").glob("folder-*.npz"))  # conftest's TPAP_DATA, not the checkout
    assert tp.load_dataset(name).x_train.shape == first.x_train.shape
    white = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(white, format="PNG")
    _bump(folder / "train" / "cat" / "0.png", white.getvalue())  # edited inside a class folder
    edited = tp.load_dataset(name)
    assert (edited.x_train == 255).flatten(1).all(1).sum() == 1 and not torch.equal(edited.x_train, first.x_train)
    _bump(folder / "test" / "dog" / "9.png", _png(np.random.default_rng(5)))  # added inside a class folder
    assert len(tp.load_dataset(name).y_test) == len(first.y_test) + 1


def _rewrite_zip(path: Path, members: dict) -> None:
    """The zip at `path` with `members` replaced or added (same size of archive when a member's bytes are)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for m in src.namelist():
            dst.writestr(m, members.get(m, src.read(m)))
        for m in set(members) - set(src.namelist()):
            dst.writestr(m, members[m])
    _bump(path, buf.getvalue())


def test_the_zip_cache_is_keyed_on_the_zips_size_and_mtime(tmp_path):
    folder = _tree(tmp_path / "z", zipped=True)
    first = tp.load_dataset(f"folder:{folder}")
    assert len(first.y_train) == 4
    from PIL import Image

    white = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(white, format="PNG")
    _rewrite_zip(folder / "train.zip", {"cat/0.png": white.getvalue()})  # a member edited, none added
    edited = tp.load_dataset(f"folder:{folder}")
    assert len(edited.y_train) == 4 and (edited.x_train == 255).flatten(1).all(1).sum() == 1
    assert not (first.x_train == 255).flatten(1).all(1).any()
    buf = io.BytesIO((folder / "train.zip").read_bytes())
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("cat/9.png", _png(np.random.default_rng(7)))
    _bump(folder / "train.zip", buf.getvalue())
    assert len(tp.load_dataset(f"folder:{folder}").y_train) == 5


def test_an_unwritable_cache_is_a_warning_naming_where_not_a_silent_pass(tmp_path):
    folder = _tree(tmp_path / "imgs")
    root = tmp_path / "root"
    root.mkdir()
    (root / "cache").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match=f"Could not write the image cache {re.escape(str(root / 'cache'))}"):
        ds = folders.load_folder(folder, root)
    assert ds.x_train.shape == (4, 3, 8, 8)
    cache = folders._folder_cache(folder, {s: folder / s for s in ("train", "test")}, tmp_path / "ok")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="cannot be read"):
        assert folders.load_folder(folder, tmp_path / "ok").x_train.shape == (4, 3, 8, 8)


def test_image_folder_errors_name_the_file(tmp_path):
    def fresh(name, **kw):
        return _tree(tmp_path / name, **kw)

    f = fresh("trunc", zipped=True)
    raw = (f / "train.zip").read_bytes()
    (f / "train.zip").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(tp.DatasetUnavailable, match=rf"{f / 'train.zip'} is not a readable zip file"):
        folders.load_folder(f, tmp_path)

    f = fresh("member", zipped=True)
    with zipfile.ZipFile(f / "test.zip", "a") as zf:
        zf.writestr("cat/bad.png", b"this is not a png")
    with pytest.raises(tp.DatasetUnavailable, match=r"test.zip member cat/bad.png is not an image PIL can read"):
        folders.load_folder(f, tmp_path)

    f = fresh("flipped", zipped=True)
    raw = bytearray((f / "test.zip").read_bytes())
    raw[60] ^= 0xFF  # inside the first member's data: its CRC fails
    (f / "test.zip").write_bytes(bytes(raw))
    with pytest.raises(tp.DatasetUnavailable, match=r"test.zip member cat/0.png"):
        folders.load_folder(f, tmp_path)

    f = fresh("text")
    (f / "train" / "dog" / "notes.png").write_text("not an image")
    with pytest.raises(tp.DatasetUnavailable, match=rf"{f / 'train' / 'dog' / 'notes.png'} is not an image"):
        folders.load_folder(f, tmp_path)

    f = fresh("empty")
    (f / "test" / "bird").mkdir()
    (f / "train" / "bird").mkdir()
    (f / "train" / "bird" / "0.png").write_bytes(_png(np.random.default_rng(3)))
    with pytest.raises(tp.DatasetUnavailable, match=rf"{f / 'test' / 'bird'} holds no images"):
        folders.load_folder(f, tmp_path)
    (f / "train" / "bird" / "0.png").unlink()
    (f / "train" / "bird" / "readme.txt").write_text("no images here")
    with pytest.raises(tp.DatasetUnavailable, match=rf"{f / 'train' / 'bird'} holds no images"):
        folders.load_folder(f, tmp_path)
    f = fresh("emptyzip", zipped=True)
    with zipfile.ZipFile(f / "train.zip", "a") as zf:
        zf.writestr("bird/", b"")
    with pytest.raises(tp.DatasetUnavailable, match=r"train.zip, folder bird/ holds no images"):
        folders.load_folder(f, tmp_path)

    f = fresh("mixed")
    _bump(f / "train" / "dog" / "1.png", _png(np.random.default_rng(1), size=10))
    with pytest.raises(tp.DatasetUnavailable, match=r"dog/1.png is 10 x 10 pixels, but .*cat/0.png is 8 x 8"):
        folders.load_folder(f, tmp_path)

    f = fresh("splits")
    for p in (f / "test").rglob("*.png"):
        p.write_bytes(_png(np.random.default_rng(2), size=6))
    with pytest.raises(tp.DatasetUnavailable, match=r"test holds 6 x 6 images but .*train 8 x 8"):
        folders.load_folder(f, tmp_path)


# ------------------------------------------------------------------ torchvision, weights, Tab. 3: the real cause
@pytest.mark.parametrize("err, match, absent", [
    (urllib.error.URLError("no network"), r"could not be downloaded \(URLError", None),
    (PermissionError(13, "Permission denied"), "torchvision could not load data set 'cifar100'.*PermissionError",
     "could not be downloaded"),
    (RuntimeError("Dataset not found or corrupted. You can use download=True to download it"),
     r"downloading is off \(download=False", "could not be downloaded"),
])
def test_torchvision_failures_report_their_real_cause(tmp_path, monkeypatch, err, match, absent):
    import torchvision.datasets as tvd

    def fail(*a, **k):
        raise err

    monkeypatch.setattr(tvd.CIFAR100, "__init__", fail)
    with pytest.raises(tp.DatasetUnavailable, match=match) as info:
        tp.load_dataset("cifar100", root=tmp_path, download=not isinstance(err, RuntimeError))
    assert absent is None or absent not in str(info.value)


def test_damaged_torchvision_files_are_named_as_damaged(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"cut short")

    def fail(*a, **k):
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    monkeypatch.setattr(tvd.CIFAR100, "__init__", fail)
    with pytest.raises(tp.DatasetUnavailable, match=rf"{tmp_path / 'cifar-100-python'} is there, but torchvision "
                                                     "finds it incomplete or corrupt"):
        tp.load_dataset("cifar100", root=tmp_path, download=False)


def test_a_damaged_weights_file_is_not_reported_as_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _, target = models.imagenet_resnet18_file()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"cut short")

    def damaged(*a, **k):
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", damaged)
    with pytest.raises(models.WeightsUnavailable, match=rf"{target} cannot be loaded \(RuntimeError: Pytorch") as err:
        models.imagenet_resnet18_state()
    assert "damaged" in str(err.value) and "could not be downloaded" not in str(err.value)


def test_table3_status_says_why_the_download_failed(tmp_path, monkeypatch):
    full = OSError(28, "No space left")
    monkeypatch.setattr(D.caltech, "download_caltech101", lambda root: (_ for _ in ()).throw(full))
    monkeypatch.setattr(models, "imagenet_resnet18_state", lambda: {})
    ok, msg = t3.status()
    assert not ok and "download failed: OSError: [Errno 28] No space left" in msg


# ------------------------------------------------------------------ nothing written into the checkout
def test_tests_write_data_runs_and_figures_outside_the_checkout(tmp_path):
    from tpap_nb import config

    for root in (config.data_root(), config.runs_root(), config.figures_root()):
        assert tmp_path in root.parents and REPO not in root.parents
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache is writable here
        tp.load_dataset(f"folder:{_tree(tmp_path / 'imgs')}")
    assert list((tmp_path / "data" / "cache").iterdir())


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "64"])
def test_a_bad_batch_size_is_refused_by_the_evaluation(net, xy, batch_size):
    from tpap_nb import evaluate as E

    x, y = xy
    kind = ValueError if isinstance(batch_size, int) else TypeError
    for call in (lambda: E.predict(net, x, batch_size=batch_size),
                 lambda: E.robust_accuracy(net, x, y, batch_size=batch_size),
                 lambda: E.robust_predictions(net, x, y, xi=0.1, batch_size=batch_size)):
        shown = repr(batch_size) if kind is TypeError else str(batch_size)
        with pytest.raises(kind, match=f"batch_size = {re.escape(shown)}"):
            call()


def test_run_attacks_refuses_one_string_of_attack_names(net, xy, tmp_path):
    from tpap_nb import evaluate as E

    x, y = xy
    with pytest.raises(TypeError, match="attacks = 'fgsm,pgd20' is one string.*\\['fgsm', 'pgd20'\\]"):
        E.run_attacks(net, x, y, "fgsm,pgd20", 0.1, tp.get_profile("smoke"), store=tmp_path / "r.jsonl")
