"""Issue 20's cases (docs/bad-inputs.md): each run against whichever tpap_nb is on PYTHONPATH, first line of what it shows.

    python scripts/bad_inputs_cases.py weights W.pt                                   # once, with this checkout's kit
    PYTHONPATH=<a checkout> python scripts/bad_inputs_cases.py run W.pt OUT.json [case-substring ...]
    python scripts/bad_inputs_cases.py table BEFORE.json NOW.json > table.md         # the markdown table

Every case runs on one thread in a temporary folder (TPAP_DATA, TPAP_RUNS, TPAP_FIGURES point there). W.pt holds the
state_dict of a small CNN (width 8) trained on digits for 3 epochs, so that both checkouts attack the same network.
"""
import json
import sys


def table(paths):
    import re
    B, N = (json.load(open(p)) for p in paths)
    F = "test_bad_inputs.py::"
    T = {
     "purify": F+"test_bad_xi_is_refused_by_purify_tpap_and_the_evaluation",
     "negxi": F+"test_bad_xi_is_refused_by_purify_tpap_and_the_evaluation, ::test_a_negative_xi_needs_the_explicit_flag",
     "eps": F+"test_bad_eps_is_refused_when_an_attack_is_built_and_by_fgsm_and_pgd",
     "settings": F+"test_bad_settings_are_refused_when_the_attack_is_built",
     "pgdsteps": F+"test_bad_steps_are_refused_by_pgd_called_directly",
     "own": F+"test_every_attacks_own_constants_are_checked",
     "profile": F+"test_get_profile_refuses_nan_inf_and_forgotten_255",
     "xistr": F+"test_xi_of_the_wrong_type_is_refused_where_it_is_given",
     "wrapper": F+"test_every_attack_refuses_the_tpap_wrapper_up_front",
     "adaptive": F+"test_the_adaptive_attacks_check_their_settings_on_entry",
     "intlab": F+"test_integer_labels_of_any_dtype_are_accepted",
     "badlab": F+"test_bad_labels_name_their_dtype_or_shape",
     "chan": F+"test_wrong_channels_or_model_dtype_is_one_clear_error_wherever_model_and_images_meet",
     "cache": F+"test_run_attacks_cache_follows_the_examples_the_weights_and_the_code",
     "ckpt": F+"test_every_unreadable_checkpoint_is_a_checkpoint_error_naming_it",
     "resume": F+"test_a_resumed_checkpoint_is_checked_against_the_model_itself",
     "fsync": F+"test_save_checkpoint_fsyncs_a_temp_file_of_its_own_then_renames",
     "two": F+"test_two_processes_training_into_one_checkpoint_do_not_collide (also ::test_a_held_lock_says_in_progress_and_who_holds_it, ::test_a_stale_lock_and_temp_files_of_a_dead_writer_are_taken_over)",
     "folder": F+"test_the_folder_cache_sees_an_edited_and_an_added_image",
     "zip": F+"test_the_zip_cache_is_keyed_on_the_zips_size_and_mtime",
     "unwritable": F+"test_an_unwritable_cache_is_a_warning_naming_where_not_a_silent_pass",
     "imgerr": F+"test_image_folder_errors_name_the_file",
     "tv": F+"test_torchvision_failures_report_their_real_cause (also ::test_damaged_torchvision_files_are_named_as_damaged)",
     "weights": F+"test_a_damaged_weights_file_is_not_reported_as_a_failed_download",
     "t3": F+"test_table3_status_says_why_the_download_failed",
     "none": "none (open, see below)",
    }
    def test_of(k):
        if k.startswith("purify(") or k.startswith("TPAP(net, xi=") and "'" not in k or k.startswith("robust_accuracy(net, x, y, xi=nan"):
            return T["negxi"] if "-0.3" in k else T["purify"]
        if k.startswith("run_attacks(..."): return T["negxi"]
        if k.startswith("fgsm(net, x, y, eps") or re.match(r"build_attack\('(fgsm|pgd20)', net, (eps|alpha)=[^']", k): return T["eps"]
        if k == "build_attack('pgd20', net, steps=-1)": return T["settings"]
        if k.startswith("pgd(net"): return T["pgdsteps"]
        if k.startswith("build_attack('cw2', net") or k.startswith("build_attack('tidim', net, div"): return T["own"]
        if k.startswith("get_profile"): return T["profile"]
        if "eps='8/255'" in k or "seed='0'" in k: return T["settings"]
        if "xi='0.15'" in k: return T["xistr"]
        if "TPAP(trained net" in k: return T["wrapper"]
        if k.startswith("DefendedClassifier(net, 0.15, grad") or k.startswith("adaptive."): return T["adaptive"]
        if "batch_size=-1" in k: return T["none"]
        if "y.int()" in k: return T["intlab"]
        if "y.float()" in k: return T["badlab"]
        if "3-channel" in k or "double" in k: return T["chan"]
        if k.startswith("run_attacks"): return T["cache"]
        if k.startswith("load_model") or k.startswith("fit(..., ckpt"): return T["ckpt"]
        if k.startswith("fit(width-8"): return T["resume"]
        if k.startswith("save_checkpoint"): return T["fsync"]
        if k.startswith("two processes"): return T["two"]
        if k.startswith("folder cache: an image"): return T["folder"]
        if k.startswith("zip cache"): return T["zip"]
        if k.startswith("folder cache unwritable"): return T["unwritable"]
        if k.startswith("folder:PATH"): return T["imgerr"]
        if k.startswith("load_dataset('cifar100'"): return T["tv"]
        if k.startswith("ImageNet"): return T["weights"]
        if k.startswith("table3"): return T["t3"]
        raise KeyError(k)

    def clean(s):
        s = re.sub(r"/tmp/bi-[A-Za-z0-9_]+", "$TMP", s)
        s = re.sub(r"process \d+ on \w+ \(since [^)]*\)", "process PID on HOST (since TIME)", s)
        s = s.replace("|", "\\|")
        return s

    SECTIONS = [
     ("Radii, step sizes and counts", lambda k: "3-channel" not in k and "double" not in k and k.startswith(("purify(", "TPAP(net, xi=-", "TPAP(net, xi=n", "TPAP(net, xi=8", "robust_accuracy(net, x, y, xi=nan", "run_attacks(...", "fgsm(net, x, y, eps", "pgd(", "get_profile")) or re.match(r"build_attack\('\w+', net, (eps|alpha|steps|c|diversity_prob)=[^']", k)),
     ("Settings of the wrong type, refused when built", lambda k: "'8/255'" in k or "'0'" in k or "'0.15'" in k),
     ("The adaptive attacks (notebook 07) and the evaluation's own counts", lambda k: k.startswith(("DefendedClassifier(net, 0.15, grad", "adaptive.", "robust_accuracy(net, x, y, xi=0.15, batch"))),
     ("Labels, channels, dtypes", lambda k: "y.int()" in k or "y.float()" in k or "3-channel" in k or "double" in k),
     ("run_attacks' record cache", lambda k: k.startswith("run_attacks ") ),
     ("Checkpoints", lambda k: k.startswith(("load_model", "fit(", "save_checkpoint", "two processes"))),
     ("Image folders, zips and their cache", lambda k: k.startswith(("folder", "zip cache"))),
     ("torchvision, ImageNet weights, Tab. 3: the real cause", lambda k: k.startswith(("load_dataset", "ImageNet", "table3"))),
    ]
    out = []
    done = set()
    for title, pred in SECTIONS:
        keys = [k for k in N if k not in done and "TPAP(trained net" not in k and pred(k)]
        done |= set(keys)
        out.append(f"\n### {title}\n\n| case | before (715e79e) | now | test |\n|---|---|---|---|")
        for k in keys:
            out.append(f"| `{k}` | {clean(B[k])} | {clean(N[k])} | {test_of(k)} |")
    # the TPAP wrapper: grouped by what 715e79e did
    w = {k: v for k, v in B.items() if "TPAP(trained net" in k}
    groups = {}
    for k, v in w.items():
        groups.setdefault(clean(v), []).append(re.search(r"build_attack\('(\w+)'", k).group(1))
    def _name(k):
        return re.search(r"build_attack\('(\w+)'", k).group(1)
    nows = {clean(N[k]).replace("'" + _name(k) + "'", "NAME") for k in w}
    assert len(nows) == 1, nows
    now = nows.pop()
    out.append("\n### Attacking the TPAP wrapper (a trained model whose weights require grad, as get_or_train returns)\n\n| case | before (715e79e) | now | test |\n|---|---|---|---|")
    for before, names in groups.items():
        out.append(f"| `build_attack(NAME, TPAP(net, 0.15))(x, y)`, NAME in {', '.join(names)} | {before} | {now} | {T['wrapper']} |")
    done |= set(w)
    missing = set(N) - done
    assert not missing, missing
    print("\n".join(out))


if __name__ == "__main__" and sys.argv[1] == "table":
    table(sys.argv[2:4])
    sys.exit(0)

import contextlib
import io
import os
import signal
import tempfile
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
WORK = Path(tempfile.mkdtemp(prefix="bi-"))
os.environ["TPAP_DATA"] = str(WORK / "data")
os.environ["TPAP_RUNS"] = str(WORK / "runs")
os.environ["TPAP_FIGURES"] = str(WORK / "figures")
os.environ.setdefault("TPAP_PRECISION", "float32")

import tpap_nb as tp  # noqa: E402
from tpap_nb import models  # noqa: E402
from tpap_nb import train as T  # noqa: E402
from tpap_nb.attacks import build_attack, fgsm, pgd  # noqa: E402
from tpap_nb.evaluate import robust_accuracy, run_attacks  # noqa: E402

DIGITS = tp.load_dataset("digits")
WEIGHTS = Path(sys.argv[2]).resolve()
if sys.argv[1] == "weights":
    cfg = tp.get_profile("smoke", epochs=3, width=8, eval_every=0)
    tp.set_seed(0)
    _m = tp.build_model("small_cnn", 10, 1, width=8)
    tp.fit(_m, DIGITS, cfg, progress=False)
    torch.save(_m.state_dict(), WEIGHTS)
    sys.exit(0)
X, Y = DIGITS.test_batch(64)
X8, Y8 = X[:8], Y[:8]
CASES = {}


def case(name):
    def deco(fn):
        CASES[name] = fn
        return fn
    return deco


def net(width=8):
    torch.manual_seed(0)
    m = tp.build_model("small_cnn", 10, 1, width=width)
    m.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return m.eval()  # weights require grad, as a model from get_or_train


NET = net()


def acc(x_adv, y=Y):
    with torch.no_grad():
        return 100 * (NET(x_adv).argmax(1) == y).float().mean().item()


def same(a, b):
    return int((a == b).flatten(1).all(1).sum())


# ------------------------------------------------------------------ radii and counts
for v in (-0.3, float("nan"), float("inf"), 8):
    case(f"purify(net, x, xi={v})")(lambda v=v: f"x_pur - x in [{(tp.purify(NET, X8, v) - X8).min():.2f}, "
                                              f"{(tp.purify(NET, X8, v) - X8).max():.2f}]")
def _tpap_acc(xi):
    with torch.no_grad():
        return 100 * (tp.TPAP(NET, xi)(X).argmax(1) == Y).float().mean().item()


for v in (-0.3, float("nan"), 8):
    case(f"TPAP(net, xi={v})")(lambda v=v: f"built; accuracy {_tpap_acc(v):.1f} % (xi 0.15: {_tpap_acc(0.15):.1f} %)")
case("robust_accuracy(net, x, y, xi=nan)")(lambda: f"{robust_accuracy(NET, X, Y, xi=float('nan'))}")
case("run_attacks(..., ['fgsm'], xi=-0.3)")(
    lambda: "records: " + str({k: round(v, 1) for k, v in run_attacks(NET, X, Y, ["fgsm"], -0.3, tp.get_profile("smoke"),
                                                                        progress=False)[0].items()
                               if k in ("acc_bare", "acc_tpap")}))
case("fgsm(net, x, y, eps=-0.3) (called directly)")(
    lambda: f"accuracy {acc(fgsm(NET, X, Y, -0.3)):.1f} % (eps +0.3: {acc(fgsm(NET, X, Y, 0.3)):.1f} %, clean {acc(X):.1f} %)")
case("build_attack('fgsm', net, eps=-0.3)")(
    lambda: f"accuracy {acc(build_attack('fgsm', NET, eps=-0.3)(X, Y)):.1f} % "
            f"(eps +0.3: {acc(build_attack('fgsm', NET, eps=0.3)(X, Y)):.1f} %, clean {acc(X):.1f} %)")
for v in (float("nan"), float("inf"), 8):
    case(f"build_attack('pgd20', net, eps={v})")(
        lambda v=v: f"built; called: accuracy {acc(build_attack('pgd20', NET, eps=v)(X8, Y8), Y8):.1f} %")
case("build_attack('pgd20', net, alpha=5.0)")(
    lambda: f"built; called: accuracy {acc(build_attack('pgd20', NET, alpha=5.0)(X8, Y8), Y8):.1f} %")
case("build_attack('pgd20', net, steps=-1)")(
    lambda: f"built; called: x_adv == x on {same(build_attack('pgd20', NET, steps=-1, random_start=False)(X8, Y8), X8)}/8 images")
case("pgd(net, x, y, eps=0.1, alpha=0.01, steps=-1)")(
    lambda: f"x_adv == x on {same(pgd(NET, X8, Y8, 0.1, 0.01, -1, random_start=False), X8)}/8 images")
case("build_attack('cw2', net, c=-1)")(lambda: f"built; {build_attack('cw2', NET, c=-1.0)}")
case("build_attack('tidim', net, diversity_prob=2)")(lambda: f"built; {build_attack('tidim', NET, diversity_prob=2)}")
for kv in ({"eps": float("nan")}, {"xi": float("inf")}, {"eps": 8}):
    case(f"get_profile('smoke', {kv})")(lambda kv=kv: f"profile with {kv} = {[tp.get_profile('smoke', **kv)[k] for k in kv]}")
# ------------------------------------------------------------------ strings at build time
case("build_attack('pgd20', net, eps='8/255')")(
    lambda: (lambda a: f"built; called: {a(X8, Y8).shape}")(build_attack("pgd20", NET, eps="8/255")))
case("build_attack('pgd20', net, seed='0')")(
    lambda: (lambda a: f"built; called: {tuple(a(X8, Y8).shape)}")(build_attack("pgd20", NET, seed="0")))
case("TPAP(net, xi='0.15')")(lambda: (lambda m: f"built; called: {tuple(m(X8).shape)}")(tp.TPAP(NET, "0.15")))


def _defended(xi):
    from tpap_nb.experiments.adaptive import DefendedClassifier
    d = DefendedClassifier(NET, xi)
    return f"built; called: {tuple(d(X8).shape)}"


case("DefendedClassifier(net, xi='0.15')")(lambda: _defended("0.15"))


# ------------------------------------------------------------------ the TPAP wrapper under every attack
def _attack_wrapper(name):
    kw = {"steps": 2} if name in ("pgd20", "pgd100", "cw2", "cw2_l2", "ddn", "ddn_l2", "sta", "sta_flow1", "sta_budget",
                                  "fwa", "tidim", "dim") else {}
    if name == "aa":
        kw = {"steps": 2, "n_queries": 20}
    if name == "sta_advertorch":
        kw = {"max_iterations": 2, "search_steps": 1}
    a = build_attack(name, tp.TPAP(NET, 0.15), **kw)
    x_adv = a(X8, Y8)
    return f"no error; x_adv == x on {same(x_adv, X8)}/8 images"


for _name in ("fgsm", "pgd20", "pgd100", "cw2", "cw2_l2", "ddn", "ddn_l2", "aa", "sta", "sta_advertorch",
              "sta_flow1", "fwa", "tidim", "dim"):
    case(f"build_attack('{_name}', TPAP(trained net, 0.15))(x, y)")(lambda n=_name: _attack_wrapper(n))

def _adaptive(kind):
    from tpap_nb.experiments.adaptive import DefendedClassifier, pgd_adaptive
    if kind == "tau":
        d = DefendedClassifier(NET, 0.15, grad="smooth", tau=float("nan"))
        xg = X8.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(d(xg), Y8).backward()
        return f"built; gradient NaN on {int(torch.isnan(xg.grad).flatten(1).any(1).sum())}/8 images"
    x_adv = pgd_adaptive(DefendedClassifier(NET, 0.15), X8, Y8, 0.3, steps=-1, restarts=1)
    return f"no error; x_adv == x on {same(x_adv, X8)}/8 images"


case("DefendedClassifier(net, 0.15, grad='smooth', tau=nan)")(lambda: _adaptive("tau"))
case("adaptive.pgd_adaptive(F, x, y, 0.3, steps=-1)")(lambda: _adaptive("steps"))
case("robust_accuracy(net, x, y, xi=0.15, batch_size=-1)")(lambda: f"{robust_accuracy(NET, X, Y, xi=0.15, batch_size=-1)}")


def _code_change():
    """A copy of the package; run fgsm through run_attacks, change attacks/base.py's fgsm, run again (same store)."""
    import shutil
    import subprocess
    import tpap_nb
    pkg = WORK / "pkgcopy"
    shutil.copytree(Path(tpap_nb.__file__).parent, pkg / "tpap_nb")
    snippet = (
        "import json, sys, torch, tpap_nb as tp\n"
        "from tpap_nb.evaluate import run_attacks\n"
        "d = tp.load_dataset('digits'); x, y = d.test_batch(16)\n"
        "torch.manual_seed(0); m = tp.build_model('small_cnn', 10, 1, width=8)\n"
        "m.load_state_dict(torch.load(sys.argv[2], weights_only=True)); m.eval()\n"
        "m.checkpoint = sys.argv[1] + '/net.pt'\n"
        "r = run_attacks(m, x, y, ['fgsm'], 0.15, tp.get_profile('smoke'), store=__import__('pathlib').Path(sys.argv[1]) / 'rec.jsonl', progress=False)[0]\n"
        "print(r['acc_bare'])\n")
    env = dict(os.environ, PYTHONPATH=str(pkg))

    def run():
        out = subprocess.run([sys.executable, "-c", snippet, str(WORK), str(WEIGHTS)], env=env, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip().splitlines()[-1]

    first = run()
    base = pkg / "tpap_nb" / "attacks" / "base.py"
    src = base.read_text()
    # "the fix": fgsm now steps with twice the radius (a changed attack whose numbers must change)
    src = src.replace("return (x.detach() + eps * _input_grad(model, x, y).sign()).clamp(0, 1)",
                      "return (x.detach() + 2 * eps * _input_grad(model, x, y).sign()).clamp(0, 1)")
    base.write_text(src)
    second = run()
    return (f"no error; acc_bare {first} % -> {second} % after fgsm was changed in attacks/base.py "
            f"({'the old record returned' if first == second else 'a fresh record'})")


case("run_attacks after an attack's code changed (attacks/base.py edited)")(_code_change)


# ------------------------------------------------------------------ labels, channels, dtypes
case("fgsm(net, x, y.int())  (int32 labels)")(lambda: f"accuracy {acc(fgsm(NET, X, Y.int(), 0.3)):.1f} %")
case("build_attack('pgd20', net)(x, y.int())")(
    lambda: f"x_adv == int64-label x_adv: {torch.equal(build_attack('pgd20', NET)(X8, Y8.int()), build_attack('pgd20', NET)(X8, Y8))}")
case("fgsm(net, x, y.float())  (float labels)")(lambda: f"accuracy {acc(fgsm(NET, X, Y.float(), 0.3)):.1f} %")
case("build_attack('pgd20', net)(x, y.float())")(lambda: f"{tuple(build_attack('pgd20', NET)(X8, Y8.float()).shape)}")
case("purify(grey net, 3-channel x)")(lambda: f"{tuple(tp.purify(NET, X8.expand(-1, 3, -1, -1).contiguous(), 0.15).shape)}")
case("build_attack('fgsm', grey net)(3-channel x, y)")(
    lambda: f"{tuple(build_attack('fgsm', NET)(X8.expand(-1, 3, -1, -1).contiguous(), Y8).shape)}")


def _double(call):
    m = net().double()
    return f"{tuple(call(m).shape)}"


case("purify(net.double(), float32 x)")(lambda: _double(lambda m: tp.purify(m, X8, 0.15)))
case("build_attack('pgd20', net.double())(float32 x, y)")(lambda: _double(lambda m: build_attack("pgd20", m)(X8, Y8)))


# ------------------------------------------------------------------ run_attacks' record cache
def _cache(change):
    m = net()
    m.checkpoint = WORK / "net.pt"
    store, cfg = WORK / f"records-{change}.jsonl", tp.get_profile("smoke")
    x, y = X[:16], Y[:16]
    first = run_attacks(m, x, y, ["fgsm"], 0.15, cfg, store=store, progress=False)[0]
    if change == "examples":
        x = X[16:32].clone()
        y = Y[16:32].clone()
    else:
        with torch.no_grad():
            m.fc.bias.add_(3 * torch.arange(10.0) / 10)
    second = run_attacks(m, x, y, ["fgsm"], 0.15, cfg, store=store, progress=False)[0]
    from tpap_nb.evaluate import load_records
    same_rec = second["key"] == first["key"]
    return (f"no error; {'the first call’s record returned' if same_rec else 'a fresh record'} "
            f"({len(load_records(store))} record(s) in the store): acc_bare {first['acc_bare']:.1f} -> "
            f"{second['acc_bare']:.1f} %")


case("run_attacks on other examples, same checkpoint name and n")(lambda: _cache("examples"))
case("run_attacks after the weights behind the checkpoint name changed")(lambda: _cache("weights"))


# ------------------------------------------------------------------ checkpoints
def _good_ckpt():
    path = WORK / "good.pt"
    if not path.exists():
        cfg = tp.get_profile("smoke", epochs=1, width=4, eval_every=0, batch_size=32)
        tp.set_seed(0)
        tp.fit(tp.build_model("small_cnn", 10, 1, width=4), DIGITS.subset(n_train=64), cfg, ckpt=path, progress=False)
    return path


def _bad_ckpt(kind):
    d = WORK / "bad"
    d.mkdir(exist_ok=True)
    p = d / f"{kind}.pt"
    raw = _good_ckpt().read_bytes()
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "half":
        p.write_bytes(raw[: len(raw) // 2])
    elif kind == "dir":
        p.mkdir(exist_ok=True)
    elif kind == "nometa":
        torch.save({"format": "tpap_nb-checkpoint-1", "model": {}}, p)
    model, _ = tp.load_model(p)
    return f"loaded {type(model).__name__}"


for _k, _what in (("empty", "an empty file"), ("half", "a half-truncated file"), ("dir", "a directory"),
                  ("nometa", "a dict with format but no meta")):
    case(f"load_model({_what})")(lambda k=_k: _bad_ckpt(k))


def _fit_bad(kind):
    d = WORK / "badfit"
    d.mkdir(exist_ok=True)
    p = d / f"{kind}.pt"
    if kind == "empty":
        p.write_bytes(b"")
    else:
        p.write_bytes(_good_ckpt().read_bytes()[: len(_good_ckpt().read_bytes()) // 2])
    cfg = tp.get_profile("smoke", epochs=1, width=4, eval_every=0, batch_size=32)
    tp.fit(tp.build_model("small_cnn", 10, 1, width=4), DIGITS.subset(n_train=64), cfg, ckpt=p, progress=False)
    return "trained"


case("fit(..., ckpt=an empty file)")(lambda: _fit_bad("empty"))
case("fit(..., ckpt=a half-truncated file)")(lambda: _fit_bad("half"))


def _resume_other_model():
    p = WORK / "resume.pt"
    p.write_bytes(_good_ckpt().read_bytes())
    cfg = tp.get_profile("smoke", epochs=1, width=4, eval_every=0, batch_size=32)  # cfg's width matches the file
    wider = tp.build_model("small_cnn", 10, 1, width=8)  # the model does not
    tp.fit(wider, DIGITS.subset(n_train=64), cfg, ckpt=p, progress=False)
    return "resumed"


case("fit(width-8 model, cfg width 4, ckpt=width-4 checkpoint)")(_resume_other_model)


def _fsync():
    calls, real = [], os.fsync
    os.fsync = lambda fd: calls.append(fd) or real(fd)
    try:
        m = tp.build_model("small_cnn", 10, 1, width=4)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1)
        T.save_checkpoint(WORK / "s.pt", m, opt, sched, {"model": "small_cnn", "dataset": "d", "num_classes": 10,
                                                          "in_channels": 1, "width": 4}, [], torch.Generator())
    finally:
        os.fsync = real
    return f"no error; os.fsync called {len(calls)} time(s) before the rename"


case("save_checkpoint: fsync before the rename")(_fsync)

CHILD = """
import os, sys, time, torch
torch.set_num_threads(1)
import tpap_nb as tp
real_save = torch.save
def slow_save(*a, **k):  # a ResNet-sized write: the file is finished 1 s after it was opened
    out = real_save(*a, **k)
    time.sleep(1.0)
    return out
torch.save = slow_save
cfg = tp.get_profile("smoke", epochs=3, width=4, eval_every=0, batch_size=32)
data = tp.load_dataset("digits").subset(n_train=64)
tp.set_seed(0)
model = tp.build_model("small_cnn", 10, 1, width=4)
hist = tp.fit(model, data, cfg, ckpt=sys.argv[1], progress=False)
print("epochs", [h["epoch"] for h in hist], flush=True)
"""


def _two_processes():
    import subprocess
    import time
    path = WORK / "two" / "run.pt"
    path.parent.mkdir()
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
        time.sleep(0.3)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    res = []
    for i, (p, o) in enumerate(zip(procs, outs)):
        lines = [ln for ln in o.strip().splitlines() if ln.strip()]
        err = [ln for ln in lines if "Error" in ln and not ln.startswith(" ")]
        waiting = [ln for ln in lines if "waiting" in ln]
        res.append(f"process {i + 1}: rc {p.returncode}"
                   + (f", {err[-1].strip()}" if err else "")
                   + (f", printed '{waiting[0].strip()}'" if waiting else "")
                   + (f", {lines[-1]}" if lines and lines[-1].startswith("epochs") else ""))
    return "; ".join(res)


case("two processes fit into one checkpoint (1 s writes)")(_two_processes)


# ------------------------------------------------------------------ image folders and zips
def _png(seed, size=8, value=None):
    from PIL import Image
    arr = (np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8) if value is None
           else np.full((size, size, 3), value, np.uint8))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tree(name, zipped=False):
    folder = WORK / "imgs" / name
    for split in ("train", "test"):
        files = {f"{c}/{i}.png": _png(hash((split, c, i)) % 1000) for c in ("cat", "dog") for i in range(2)}
        if zipped:
            folder.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
                for n, raw in files.items():
                    zf.writestr(n, raw)
        else:
            for n, raw in files.items():
                (folder / split / n).parent.mkdir(parents=True, exist_ok=True)
                (folder / split / n).write_bytes(raw)
    return folder


def _bump(path, raw):
    st = path.stat() if path.exists() else None
    path.write_bytes(raw)
    if st is not None:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _load(folder, root=None):
    return tp.load_dataset(f"folder:{folder}", root=root or WORK / "data")


def _edited_folder():
    f = _tree("edit")
    _load(f)  # read once: the cache is written
    _bump(f / "train" / "cat" / "0.png", _png(0, value=255))
    again = _load(f)
    white = int((again.x_train == 255).flatten(1).all(1).sum())
    return f"no error; white training images after the edit: {white} (expected 1)"


def _added_folder():
    f = _tree("add")
    n0 = len(_load(f).y_test)
    _bump(f / "test" / "dog" / "9.png", _png(5))
    return f"no error; test images {n0} -> {len(_load(f).y_test)} after adding one (expected {n0 + 1})"


def _zip_rewrite(f, split, edit):
    buf = io.BytesIO()
    with zipfile.ZipFile(f / f"{split}.zip") as src, zipfile.ZipFile(buf, "w") as dst:
        for m in src.namelist():
            dst.writestr(m, edit.get(m, src.read(m)))
        for m, raw in edit.items():
            if m not in src.namelist():
                dst.writestr(m, raw)
    _bump(f / f"{split}.zip", buf.getvalue())


def _edited_zip():
    f = _tree("zedit", zipped=True)
    _load(f)
    _zip_rewrite(f, "train", {"cat/0.png": _png(0, value=255)})
    white = int((_load(f).x_train == 255).flatten(1).all(1).sum())
    return f"no error; white training images after the edit: {white} (expected 1)"


def _added_zip():
    f = _tree("zadd", zipped=True)
    n0 = len(_load(f).y_train)
    _zip_rewrite(f, "train", {"cat/9.png": _png(7)})
    return f"no error; training images {n0} -> {len(_load(f).y_train)} after adding one (expected {n0 + 1})"


case("folder cache: an image edited inside a class folder")(_edited_folder)
case("folder cache: an image added inside a class folder")(_added_folder)
case("zip cache: a member of train.zip edited")(_edited_zip)
case("zip cache: a member added to train.zip")(_added_zip)


def _unwritable_cache():
    f = _tree("nocache")
    root = WORK / "filecache"
    root.mkdir()
    (root / "cache").write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = _load(f, root)
    shown = [str(x.message).splitlines()[0] for x in w if issubclass(x.category, UserWarning)]
    return (f"warning: {shown[0]}" if shown else "no warning") + f"; loaded {len(ds.y_train)} images"


case("folder cache unwritable (a file where cache/ should be)")(_unwritable_cache)


def _truncated_zip():
    f = _tree("trunc", zipped=True)
    raw = (f / "train.zip").read_bytes()
    (f / "train.zip").write_bytes(raw[: len(raw) // 2])
    _load(f)
    return "loaded"


def _member():
    f = _tree("member", zipped=True)
    with zipfile.ZipFile(f / "test.zip", "a") as zf:
        zf.writestr("cat/bad.png", b"this is not a png")
    _load(f)
    return "loaded"


def _text_file():
    f = _tree("text")
    (f / "train" / "dog" / "notes.png").write_text("not an image")
    _load(f)
    return "loaded"


def _empty_class():
    f = _tree("empty")
    (f / "test" / "bird").mkdir()
    (f / "train" / "bird").mkdir()
    (f / "train" / "bird" / "0.png").write_bytes(_png(3))
    ds = _load(f)
    return f"no error; classes {ds.classes}, test labels {sorted(set(ds.y_test.tolist()))}"


def _mixed():
    f = _tree("mixed")
    _bump(f / "train" / "dog" / "1.png", _png(1, size=10))
    _load(f)
    return "loaded"


case("folder:PATH with train.zip cut in half")(_truncated_zip)
case("folder:PATH, a zip member that is not an image")(_member)
case("folder:PATH, a .png file that is text")(_text_file)
case("folder:PATH, an empty class folder test/bird/")(_empty_class)
case("folder:PATH, one 10 x 10 image among 8 x 8")(_mixed)


# ------------------------------------------------------------------ torchvision, weights, Tab. 3
def _tv(err, download=True):
    import torchvision.datasets as tvd
    real = tvd.CIFAR100.__init__

    def fail(*a, **k):
        raise err

    tvd.CIFAR100.__init__ = fail
    try:
        tp.load_dataset("cifar100", root=WORK / "tv", download=download)
    finally:
        tvd.CIFAR100.__init__ = real
    return "loaded"


case("load_dataset('cifar100'): torchvision raises PermissionError")(
    lambda: _tv(PermissionError(13, "Permission denied", "/data/cifar-100-python")))
case("load_dataset('cifar100', download=False), not on disk")(
    lambda: _tv(RuntimeError("Dataset not found or corrupted. You can use download=True to download it"), False))


def _weights():
    os.environ["TORCH_HOME"] = str(WORK / "torch")
    _, target = models.imagenet_resnet18_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"cut short")
    real = torch.hub.load_state_dict_from_url

    def damaged(*a, **k):
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")

    torch.hub.load_state_dict_from_url = damaged
    try:
        models.imagenet_resnet18_state()
    finally:
        torch.hub.load_state_dict_from_url = real
    return "loaded"


case("ImageNet ResNet-18 weights file on disk but damaged")(_weights)


def _table3():
    from tpap_nb.experiments import table3 as t3
    try:
        from tpap_nb.data import caltech as mod
    except ImportError:
        from tpap_nb import data as mod
    real_dl, real_w = mod.download_caltech101, models.imagenet_resnet18_state

    def full(root):
        raise OSError(28, "No space left on device")

    mod.download_caltech101 = full
    models.imagenet_resnet18_state = lambda: {}
    try:
        ok, msg = t3.status()
    finally:
        mod.download_caltech101, models.imagenet_resnet18_state = real_dl, real_w
    return f"status: {msg}"


case("table3.status(): Caltech-101 download fails (disk full)")(_table3)


# ------------------------------------------------------------------ run
class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout("took over 120 s (stopped)")


def first_line(fn):
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(120)
    out = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as w, contextlib.redirect_stderr(out):
            warnings.simplefilter("always")
            res = fn()
        ws = [f"{x.category.__name__}: {str(x.message).splitlines()[0]}" for x in w
              if not issubclass(x.category, DeprecationWarning) and "TypedStorage" not in str(x.message)]
        return str(res) + ("" if not ws or res.startswith("warning") else f" [warning: {ws[0]}]")
    except Exception as err:  # noqa: BLE001
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
        where = ""
        tb = traceback.extract_tb(err.__traceback__)
        if tb:
            f = tb[-1]
            where = f"  (raised in {Path(f.filename).name}:{f.lineno})"
        return f"{type(err).__name__}: {lines[0] if lines else ''}{where}"
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    want = sys.argv[4:]
    results = {}
    for name, fn in CASES.items():
        if want and not any(w in name for w in want):
            continue
        results[name] = first_line(fn)
        print(f"{name}\n    {results[name]}", flush=True)
    Path(sys.argv[3]).write_text(json.dumps(results, indent=1))
