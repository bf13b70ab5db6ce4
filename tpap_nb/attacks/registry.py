"""The paper's attacks by name (Sec. 4.1.3, columns of Tab. 1-2): build_attack(name, model)(x, y) -> x_adv.

Every setting is a keyword whose default is the authors' evaluation setting (TEST_other_attack.py
in github.com/tly18/TPAP); eps, alpha and budgets are in pixel units on [0, 1] images. An attack
called `pgd20`, `pgd100` or `aa` always runs its definition: there is no iteration scaling (a
profile that must save time attacks fewer examples). A count passed explicitly (`steps=5`) is
honoured but marks the label (`attack_label`: "custom: steps 5, definition 20"). Two settings exist
for every attack: `batch_size` (default 128, the authors' test batch) splits the input, and `seed`
(default 0; `evaluate.attack_overrides` passes the run's cfg['seed']) seeds all of the attack's
randomness (PGD's random start, DIM's diversity, TI-DIM's, DDN's random directions, APGD, FAB and
Square): the attack runs inside torch.random.fork_rng with torch.manual_seed(seed) and gets a CPU
torch.Generator seeded with it where it takes one, so the same call gives the same x_adv and the
caller's random stream is untouched. Attacks run with the model in eval mode (its mode is restored
after) and return detached images in [0, 1].

Every setting is checked when the attack is built (`attack_settings`, `SETTING_CHECKS`): radii and step
sizes are numbers in pixel units in [0, 1] (eps = 8 is refused: did you mean 8/255?), counts whole
numbers >= 1, seeds integers. A call checks x, y and the model once (labels of any integer dtype are
converted to int64 once) and refuses a model whose logits have no gradient w.r.t. x (the `TPAP`
wrapper: attack the bare model, or `experiments.adaptive.DefendedClassifier` for the pipeline); the
attack's own steps then run inside `checks.inputs_checked()`, without a scan (or host sync) per step.

Minimal-norm attacks (`cw2`, `ddn`, `sta`) are unbounded, as in the paper: where they fail they
return x, where they succeed a point just across the boundary, so accuracy after purification can
exceed clean accuracy (notebook 03). Their budgeted twins answer the robustness question:
`cw2_l2` and `ddn_l2` with an L2 `budget` (default 0.5; an x_adv beyond it is replaced by x) and
`sta_flow1` (flow-PGD with |u|, |v| <= 1 px, `sta_flow1.py`).

The attacks the authors actually ran, beside ours: `dim` is their "TI-DIM" (plain DIM, `dim.py`;
the paper's 75.21 belongs beside it, not beside the real `tidim`), and `sta_advertorch` is
advertorch 0.2.3's SpatialTransformAttack with its flaws (a REPRODUCTION OF A FLAW: its constant is
never searched and every failed input comes back as an all-zero image; the paper's 31.4 belongs
beside it, not beside `sta`).

AutoAttack. torchattacks 3.5.1's `AutoAttack(version='standard')` chains its ports of APGD-CE,
APGD-T, FAB-T and Square with MultiAttack, but builds APGD, APGD-T and FAB with their default
steps=10, where the official standard version (fra31/auto-attack) runs 100 iterations, and it
targets n_classes - 1 classes where the official code targets 9. Open torchattacks issues about
this: #164 (2023, "what is the difference between autoattack.py in this repository and the
auto-attack repository?", different results; the maintainer answered that in the latest version
the robust accuracy was the same and that randomness gives small differences), #188 (2024,
ImageNet-100: 1.92% robust accuracy with torchattacks vs about 2.52% with the official code, no
resolution), and #196 (2024, asks why 10 iterations instead of the paper's 100, unanswered). So
`aa` here assembles the same torchattacks components itself with the official standard settings:
100 iterations (`steps`), 9 target classes (fewer if the model has fewer classes), one restart,
5000 Square queries (`n_queries`). tests/test_attacks.py checks it reaches the exact robust
accuracy of a linear classifier, which is known in closed form. torchattacks reseeds the global
torch RNG inside its attacks (`seed`), so `aa` runs inside torch.random.fork_rng to leave the
caller's random stream untouched.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import torch
import torch.nn as nn

from ..checks import (
    check_count,
    check_images,
    check_labels,
    check_model_input,
    check_radius,
    check_real,
    check_seed,
    import_torchattacks,
    inputs_checked,
)
from ..models import eval_mode
from .base import fgsm, pgd
from .cw import cw_l2
from .ddn import ddn
from .dim import PAPER_SETTINGS as _DIM_PAPER
from .dim import dim
from .fwa import fwa
from .sta_advertorch import PAPER_SETTINGS as _STA_ADV_PAPER
from .sta_advertorch import sta_advertorch
from .sta_flow1 import sta_flow1
from .stadv import stadv
from .tidim import tidim

try:  # the installed version, read without importing torchattacks (`import tpap_nb` must not)
    _TA = f"torchattacks {metadata.version('torchattacks')}"
except metadata.PackageNotFoundError:
    _TA = "torchattacks (not installed)"


AA_TARGETS = 9  # target classes of APGD-T and FAB-T in the official standard version


def autoattack(model, x, y, eps, norm="Linf", version="standard", steps=100, n_queries=5000, seed=0,
               n_classes: int | None = None):
    """AutoAttack standard (Croce & Hein 2020): APGD-CE, APGD-T, FAB-T, Square, each on robust points.

    The one assembly of AutoAttack in the kit (the registry's `aa`, and AutoAttack on the whole TPAP
    pipeline in experiments/adaptive.py): the official standard settings, see the module docstring.
    """
    if version != "standard":
        raise ValueError(f"aa supports version='standard' only (the paper's AA), got {version!r}.")
    torchattacks = import_torchattacks()
    model = Float32Logits(model)  # APGD-T hands its DLR losses to numpy, which has no bf16 (fast-path autocast)
    if n_classes is None:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
    targets = min(AA_TARGETS, n_classes - 1)
    common = dict(norm=norm, eps=eps, seed=seed, n_restarts=1)
    attacks = [torchattacks.APGD(model, steps=steps, loss="ce", **common)]
    # torchattacks targets n_classes - 1 classes and reads n_classes for nothing else: targets + 1
    # gives the official 9 targets without patching the attack after construction.
    if n_classes >= 4:  # the targeted DLR loss needs the 4 largest logits
        attacks.append(torchattacks.APGDT(model, steps=steps, n_classes=targets + 1, **common))
    attacks.append(torchattacks.FAB(model, steps=steps, multi_targeted=True, n_classes=targets + 1, **common))
    attacks.append(torchattacks.Square(model, n_queries=n_queries, **common))
    devices = [x.device] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices):  # contiguous x: FAB .view()s x.grad, which takes x's layout
        return torchattacks.MultiAttack(attacks)(x.contiguous(), y)



class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient (a channels_last network's grad w.r.t. x is
    channels_last, and torchattacks' FAB calls `.view` on it, which fails)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


class Float32Logits(torch.nn.Module):
    """`model` as torchattacks needs it on the fast path: float32 logits under bf16 autocast (its numpy
    bookkeeping has no bf16) and a contiguous input gradient from a channels_last network."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)  # torchattacks restores the mode it saw on the wrapper onto `model`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ContiguousGrad.apply(x)).float()

@dataclass(frozen=True)
class AttackSpec:
    """One registry entry: how to run it, its paper defaults, its iteration counts, what runs."""

    run: Callable
    defaults: dict
    counts: tuple = ()  # the settings that are iteration / query counts of the definition
    info: str = ""
    budget: bool = False  # True: L2 `budget` setting, x_adv beyond it is replaced by x
    generator: bool = False  # True: run(...) takes a `generator` (a CPU torch.Generator seeded with `seed`)
    extra: dict = field(default_factory=lambda: dict(batch_size=128, seed=0))


_LINF = dict(eps=8 / 255)
_CW = dict(c=1.0, kappa=1.0, steps=10, lr=0.01, binary_search_steps=4)
_DDN = dict(steps=20, gamma=0.05, init_norm=1.0, levels=16)
_AA = dict(_LINF, norm="Linf", version="standard", steps=100, n_queries=5000, seed=0)
_DDN_INFO = "tpap_nb own DDN (Rony et al. Alg. 1, the algorithm of advertorch's DDNL2Attack)"
_CW_INFO = ("tpap_nb own CW-L2 with Carlini's binary search over c (same steps as "
            f"{_TA} CW when binary_search_steps=1, kappa=0)")

ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(fgsm, dict(_LINF), (), f"tpap_nb own FGSM (base.fgsm; equal to {_TA} FGSM)"),
    "pgd20": AttackSpec(pgd, dict(_LINF, alpha=0.003, steps=20, random_start=True), ("steps",),
                        f"tpap_nb own L-inf PGD (base.pgd; equal to {_TA} PGD from the same random start)",
                        generator=True),
    "pgd100": AttackSpec(pgd, dict(_LINF, alpha=0.0007, steps=100, random_start=True), ("steps",),
                         f"tpap_nb own L-inf PGD (base.pgd; equal to {_TA} PGD from the same random start)",
                         generator=True),
    "cw2": AttackSpec(cw_l2, dict(_CW), ("steps", "binary_search_steps"), _CW_INFO + ", unbounded"),
    "cw2_l2": AttackSpec(cw_l2, dict(_CW, budget=0.5), ("steps", "binary_search_steps"), _CW_INFO + ", L2 budget",
                         budget=True),
    "ddn": AttackSpec(ddn, dict(_DDN), ("steps",), _DDN_INFO + ", unbounded"),
    "ddn_l2": AttackSpec(ddn, dict(_DDN, budget=0.5), ("steps",), _DDN_INFO + ", L2 budget", budget=True),
    "aa": AttackSpec(autoattack, dict(_AA), ("steps", "n_queries"),
                     f"{_TA} APGD-CE, APGD-T, FAB-T, Square (ports of Croce & Hein's AutoAttack) chained by "
                     "MultiAttack at the official version='standard' settings (100 iterations, 9 targets, "
                     "5000 Square queries)"),
    "sta": AttackSpec(stadv, dict(steps=10, search_steps=5, tau=0.05, kappa=0.0), ("steps", "search_steps"),
                      "tpap_nb own stAdv (Xiao et al.: flow, bilinear resampling, L-BFGS, search over tau), "
                      "unbounded"),
    "sta_advertorch": AttackSpec(
        sta_advertorch, dict(_STA_ADV_PAPER), ("max_iterations", "search_steps"),
        "REPRODUCTION OF A FLAW: advertorch 0.2.3 SpatialTransformAttack as the authors ran it (its "
        "constant is never searched; every input it fails on is returned as an ALL-ZERO image, so "
        "accuracy under it counts black images); the paper's STA column"),
    "sta_flow1": AttackSpec(sta_flow1, dict(max_flow=1.0, steps=20, alpha=0.25, tau=0.0), ("steps",),
                            "tpap_nb budgeted STA (sta_flow1: flow-PGD on stAdv's warp, |u|, |v| <= max_flow "
                            "px, most adversarial iterate)"),
    "fwa": AttackSpec(fwa, dict(_LINF, kernel_size=4, gamma=0.003, steps=20, dual_steps=15), ("steps", "dual_steps"),
                      "tpap_nb own FWA (Wu et al.: Frank-Wolfe, entropic LMO, local k x k transport)"),
    "tidim": AttackSpec(tidim, dict(_LINF, alpha=0.003, steps=20, decay=1.0, len_kernel=7, nsig=3.0,
                                    resize_rate=33 / 32, diversity_prob=0.5, resize_back=True), ("steps",),
                        f"tpap_nb own TI-DIM (= {_TA} TIFGSM's update, any channel count, resized back)"),
    "dim": AttackSpec(dim, dict(_DIM_PAPER), ("steps",),
                      "the authors' DIM_Attack (their attack/DIM/DIM.py), which the paper calls TI-DIM: momentum "
                      "+ input diversity, no translation-invariant kernel, one gradient mean per batch; on 32-px "
                      "CIFAR its transform is the identity; the paper's TI-DIM column", generator=True),
}
PAPER_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw2", "ddn", "aa", "sta", "fwa", "tidim")  # the kit's Tab. 2 order
# Tab. 2 as notebook 03 shows it: each of the paper's columns beside the attack the authors ran
# (`dim` for their TI-DIM, `sta_advertorch` for their STA) and each unbounded minimal-norm attack
# beside its budgeted twin.
TABLE2_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw2", "cw2_l2", "ddn", "ddn_l2", "aa", "sta", "sta_advertorch",
                  "sta_flow1", "fwa", "tidim", "dim")
UNBOUNDED = {"cw2": "cw2_l2", "ddn": "ddn_l2", "sta": "sta_flow1"}  # minimal-norm attack -> budgeted twin


def _spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise ValueError(f"Unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}.")
    return ATTACKS[name]


def attack_settings(name: str, **overrides) -> dict:
    """The full effective settings of `name`: its definition (the paper's defaults) with the overrides."""
    spec = _spec(name)
    valid = {**spec.defaults, **spec.extra}
    if "scale" in overrides:
        raise ValueError(
            f"Attack {name!r} has no `scale` setting (removed in issue 12): an attack called {name!r} always "
            "runs its definition. To save time attack fewer examples (n_attack), or pass an explicit count "
            f"({', '.join(spec.counts) or 'none'}); the label then says it is not the definition."
        )
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {unknown} for attack {name!r}; valid settings: {', '.join(sorted(valid))}."
        )
    cfg = {**valid, **overrides}
    for key, value in cfg.items():
        _check_setting(name, key, value)
    return cfg


def _flag(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} = {value!r} is a {type(value).__name__}; it must be True or False.")


def _choice(*options):
    def check(value, name):
        if value not in options:
            raise ValueError(f"{name} = {value!r}: choose one of {options}.")
    return check


def _real(low=None, high=None, low_open=False, high_open=False, what=""):
    return lambda value, name: check_real(value, name, low, high, low_open, high_open, what)


def _count(minimum=1):
    return lambda value, name: check_count(value, name, minimum)


# How each setting of the registry is checked when an attack is built (attack_settings): radii and step
# sizes in pixel units of [0, 1], counts whole numbers >= 1, the other constants finite and in range.
SETTING_CHECKS = {
    "eps": check_radius, "alpha": check_radius,
    "steps": _count(), "binary_search_steps": _count(), "search_steps": _count(), "dual_steps": _count(),
    "max_iterations": _count(), "n_queries": _count(), "batch_size": _count(), "kernel_size": _count(),
    "len_kernel": _count(), "image_resize": _count(2),
    "seed": lambda value, name: check_seed(value, name),
    "levels": lambda value, name: None if value is None else check_count(value, name, 2),
    "c": _real(0, low_open=True, what="the initial CW constant"), "kappa": _real(0, what="a logit margin"),
    "lr": _real(0, low_open=True, what="Adam's step size"),
    "gamma": _real(0, low_open=True, what="DDN's norm step / FWA's entropic regulariser"),
    "init_norm": _real(0, low_open=True, what="an L2 norm"), "budget": _real(0, low_open=True, what="an L2 norm"),
    "tau": _real(0, what="a flow-smoothness weight"), "decay": _real(0, what="a momentum factor"),
    "nsig": _real(0, low_open=True, what="the Gaussian's extent in sigmas"),
    "resize_rate": _real(1, low_open=True, what="the padded size / the image size"),
    "diversity_prob": _real(0, 1, what="a probability"), "prob": _real(0, 1, what="a probability"),
    "confidence": _real(0, what="a logit margin"), "initial_const": _real(0, what="the flow penalty constant"),
    "max_flow": _real(0, what="a flow bound in pixels"),
    "random_start": _flag, "resize_back": _flag,
    "norm": _choice("Linf", "L2"), "version": _choice("standard"),
}
# Where an attack's setting means something else than SETTING_CHECKS says.
ATTACK_SETTING_CHECKS = {
    ("sta", "tau"): _real(0, low_open=True, what="the initial flow-smoothness weight of the search over tau"),
    ("sta_flow1", "alpha"): lambda value, name: None if value is None else check_real(
        value, name, 0, what="a flow step in pixels (None: max_flow / 4)"),
    ("fwa", "gamma"): _real(0, low_open=True, what="the entropic regulariser"),
    ("ddn", "gamma"): _real(0, 1, low_open=True, high_open=True, what="the norm's relative step"),
    ("ddn_l2", "gamma"): _real(0, 1, low_open=True, high_open=True, what="the norm's relative step"),
}


def _check_setting(attack: str, key: str, value) -> None:
    """Refuse a wrong type or an out-of-range value of one setting, naming it (radii: did you mean N/255?)."""
    check = ATTACK_SETTING_CHECKS.get((attack, key)) or SETTING_CHECKS.get(key)
    if check is None:
        return
    try:
        check(value, key)
    except (TypeError, ValueError) as err:
        raise type(err)(f"Attack {attack!r}: {err}") from None


def radius(eps: float) -> str:
    """How labels write a radius: a short decimal as it is (0.3, 0.6, 0.15; 0), else 8/255 when eps is a whole
    number of 255ths, else the number to 3 digits."""
    short, k = f"{eps:.3g}", eps * 255
    if abs(float(short) - eps) < 1e-12:
        return short
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else short


def attack_label(name: str, settings: dict | None = None, n: int | None = None) -> str:
    """What ran, for a table header or a caption: steps x step size, restarts or queries, radius, n.

    A count that differs from the attack's definition is named ("custom: steps 5, definition 20");
    `sta_advertorch` is labelled as the reproduction of a flaw it is.
    """
    s, parts = attack_settings(name) if settings is None else settings, []
    spec = ATTACKS.get(name)
    if "max_flow" in s:
        parts.append(f"{s['steps']} x {s['alpha']:g} px flow steps")
    elif "alpha" in s and "steps" in s:
        parts.append(f"{s['steps']} x {radius(s['alpha'])}"
                     + (", random start, 1 restart" if s.get("random_start") else ""))
    elif "max_iterations" in s:
        parts.append(f"{s['search_steps']} rounds x {s['max_iterations']} L-BFGS iterations, constant "
                     f"{s['initial_const']:g} never searched, failures returned as zero images")
    elif "steps" in s:
        parts.append(f"{s['steps']} iterations")
    if name == "aa" or "n_queries" in s:
        parts.append(f"APGD-CE, APGD-T {AA_TARGETS} targets, FAB-T, Square {s['n_queries']} queries, 1 restart")
    if "search_steps" in s and "max_iterations" not in s:
        parts.append(f"{s['search_steps']} search rounds")
    if "binary_search_steps" in s:
        parts.append(f"{s['binary_search_steps']} binary-search steps")
    if "dual_steps" in s:
        parts.append(f"{s['dual_steps']} dual steps")
    if "decay" in s and "alpha" in s:
        parts.append(f"momentum {s['decay']:g}")
    if "eps" in s:
        parts.append(f"eps {radius(s['eps'])}")
    if s.get("budget") is not None and "budget" in s:
        parts.append(f"L2 <= {s['budget']:g}")
    elif name in UNBOUNDED:
        parts.append("unbounded")
    if s.get("max_flow") is not None and "max_flow" in s:
        parts.append(f"flow <= {s['max_flow']:g} px")
    if spec is not None:
        custom = [f"{k} {s[k]}, definition {spec.defaults[k]}" for k in spec.counts
                  if k in s and s[k] != spec.defaults[k]]
        if custom:
            parts.append("custom: " + "; ".join(custom))
    if n is not None:
        parts.append(f"n = {n}")
    head = f"{name} [reproduction of a flaw]" if name == "sta_advertorch" else name
    return f"{head} ({', '.join(parts)})"


def attack_info(name: str) -> str:
    """Which implementation runs for attack `name` (for records and notebook prose)."""
    return _spec(name).info


class Attack:
    """A built attack: call it as attack(x, y) -> x_adv; `.name`, `.settings`, `.info` describe it."""

    def __init__(self, name: str, model: nn.Module, settings: dict):
        self.name, self.model, self.settings = name, model, settings
        self.info = attack_info(name)

    def __repr__(self) -> str:
        return f"Attack({self.name!r}, {self.settings})"

    def _run(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spec = ATTACKS[self.name]
        kwargs = {k: v for k, v in self.settings.items() if k in spec.defaults and k != "budget"}
        if spec.generator:
            kwargs["generator"] = generator
        x_adv = spec.run(self.model, x, y, **kwargs).detach().clamp(0, 1)
        if spec.budget:
            over = (x_adv - x).flatten(1).norm(dim=1) > self.settings["budget"]
            x_adv[over] = x[over]
        return x_adv

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_images(x)
        y = check_labels(y, len(x)).to(x.device)
        check_model_input(self.model, x)
        x = x.detach()
        with eval_mode(self.model):
            if len(x):
                check_labels(y, len(x), self._probe(x[:1]))
            seed = int(self.settings["seed"])
            devices = [x.device] if x.is_cuda else []
            with torch.enable_grad(), torch.random.fork_rng(devices=devices), inputs_checked():
                torch.manual_seed(seed)  # torch's global stream: TI-DIM, DDN, torchattacks
                generator = torch.Generator().manual_seed(seed)  # PGD's start, DIM's diversity
                size = int(self.settings["batch_size"])
                parts = [self._run(x[i:i + size], y[i:i + size], generator) for i in range(0, len(x), size)]
        return torch.cat(parts) if parts else x.clone()

    def _probe(self, x1: torch.Tensor) -> int:
        """The model's class count, from one example; refuses a model whose logits have no gradient w.r.t. x.

        Every attack of the registry follows grad_x of the logits. Without one (TPAP's purification
        detaches x; frozen or not, its weights make no path back to x) an attack would raise torch's
        autograd error or, worse, return x unchanged (cw2: counted as robust).
        """
        with torch.enable_grad():
            x1 = x1.clone().requires_grad_(True)
            logits = self.model(x1)
            grad = None
            if logits.requires_grad:
                (grad,) = torch.autograd.grad(logits.float().sum(), x1, allow_unused=True)
        if grad is None:
            raise RuntimeError(
                f"Attack {self.name!r} needs the gradient of the logits w.r.t. x, but the logits of "
                f"{type(self.model).__name__} do not depend on x through autograd (TPAP's purification "
                "detaches x, and its sign step has no useful gradient). Attack the undefended model and purify "
                "afterwards, as the paper does (Sec. 4.1.3; evaluate.run_attacks), or attack the whole pipeline "
                "through a backward pass made for it: tpap_nb.experiments.adaptive.DefendedClassifier(model, xi, "
                "grad='bpda') (or 'exact', 'smooth'), as notebook 07 does."
            )
        return logits.shape[1]


def build_attack(name: str, model: nn.Module, **settings) -> Attack:
    """Attack `name` of Sec. 4.1.3 against `model`, paper defaults; attack(x, y) -> x_adv."""
    return Attack(name, model, attack_settings(name, **settings))
