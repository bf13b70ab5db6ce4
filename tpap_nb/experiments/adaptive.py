"""Adaptive attacks on the whole TPAP pipeline F(x) = f(P(x)) (Athalye et al. 2018; Croce et al. 2022).

The paper (Sec. 4) crafts attacks on the bare model f and then purifies (Eq. 7-9). A test-time
defence is only credible once the attacker targets F itself; this module gives F three backward
passes (BPDA, a smooth surrogate, the exact graph), runs gradient, gradient-free and transfer
attacks on it, and turns the per-sample results into a worst case and sanity flags (the verdict in words:
`report.adaptive`; the bar chart: `plots.accuracy_bars`).
"""
from __future__ import annotations

import time

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attacks.base import cross_entropy, pgd, pgd_loop, uniform_start
from ..attacks.registry import AA_TARGETS, Float32Logits, attack_settings, autoattack
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
from ..purify import GRADS, purify_with_pred

# The attacks of this module by name (the paper's attacks are the registry's `tpap_nb.attacks.ATTACKS`).
ADAPTIVE_ATTACKS = ("clean", "transfer", "pgd-bpda", "pgd-smooth", "pgd-exact", "apgd-ce", "apgd-t", "autoattack",
                    "square")
DEFAULT_ATTACKS = ("clean", "transfer", "pgd-bpda", "pgd-smooth", "apgd-ce", "apgd-t", "autoattack", "square")
GRADIENT_ATTACKS = ("pgd", "pgd-bpda", "pgd-smooth", "pgd-exact", "apgd-ce", "apgd-t")


class BareClassifier(nn.Module):
    """f(x) in eval mode, counting inner-model passes in samples (forward, backward, hvp, predictions)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = False
        self.reset_counts()

    def train(self, mode: bool = True) -> BareClassifier:
        """Set this wrapper's flag only: the wrapped model runs in eval mode per call and keeps its own mode.

        (torchattacks calls .train() on the module it attacked when that looked like training;
        recursing would leave the caller's model in train mode.)
        """
        self.training = mode
        return self

    def reset_counts(self) -> None:
        self.counts = {"forward": 0, "backward": 0, "hvp": 0, "predictions": 0}

    def passes_per_prediction(self) -> float:
        """Inner passes per prediction of this module; a Hessian-vector product counts as 2 passes."""
        return _passes(self.counts) / max(self.counts["predictions"], 1)

    def _count_on_backward(self, t: torch.Tensor, key: str) -> None:
        if t.requires_grad:
            t.register_hook(lambda grad, n=t.shape[0]: self.counts.__setitem__(key, self.counts[key] + n))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        self.counts["forward"] += x.shape[0]
        logits = self.model(x)
        self._count_on_backward(logits, "backward")
        return logits

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x.detach())
        with eval_mode(self.model):
            out = self._predict(x)
        self.counts["predictions"] += x.shape[0]
        return out


class DefendedClassifier(BareClassifier):
    """F(x) = f(P(x)), P the TPAP purification (Eq. 7-9, `purify_with_pred`), with a backward pass chosen for attacks.

    The forward value is that of ``TPAP(model, xi)`` in every mode; only the gradient differs:

    - ``"bpda"`` (A1): BPDA with the identity, dP/dx := I, so the attacker gets grad f at x_pur.
    - ``"smooth"`` (A2): sign(g) in the forward pass, xi * tanh(g / (tau * mean|g|)) in the backward
      pass, g = grad_x CE(f(x), y_pred) built with ``create_graph=True`` so the attack sees how the
      purification direction moves with x. g is divided per sample by its mean |g| (a constant in
      the backward pass), so tau is scale-free: |g| = tau * mean|g| maps to tanh(1) = 0.76.
    - ``"exact"`` (A3): the plain autograd graph of Eq. 7-8. d sign/dg = 0 almost everywhere, so the
      only gradient left is the identity path through x + gamma, masked where the clip to [0, 1]
      binds: A3 equals A1 wherever no pixel is clipped (and costs a wasted Hessian-vector product).

    ``counts`` holds inner-model passes in samples: a no-grad prediction costs 2 forwards and
    1 backward; an attacker's gradient adds 1 backward (and 1 Hessian-vector product for A2/A3).
    """

    def __init__(self, model: nn.Module, xi: float = 8 / 255, grad: str = "bpda", tau: float = 0.5):
        super().__init__(model)
        if grad not in GRADS:
            raise ValueError(f"grad={grad!r} is not a gradient mode; choose one of {GRADS}.")
        self.xi, self.grad, self.tau = check_radius(xi, "xi"), grad, _tau(tau)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        self.counts["forward"] += x.shape[0]
        x_pur, _ = purify_with_pred(self.model, x, self.xi, grad=self.grad, tau=self.tau,
                                    on_graph=lambda g: self._count_on_backward(g, "hvp"))  # Eq. 6-8
        self.counts["backward"] += x.shape[0]
        return self._logits(x_pur)  # Eq. 9

    def extra_repr(self) -> str:
        return f"xi={self.xi:.5f}, grad={self.grad!r}, tau={self.tau}"


def _tau(tau) -> float:
    return check_real(tau, "tau", 0, low_open=True, what="the tanh temperature of the smooth surrogate")


def _counts(**counts) -> None:
    """Refuse a count that is not a whole number >= 1 (steps=-1 would silently run one step or none)."""
    for name, value in counts.items():
        check_count(value, name)


def _scale(scale) -> float:
    return check_real(scale, "scale", 0, low_open=True, what="a factor on this module's own attack counts")


def _n(count: int, scale: float) -> int:
    return max(1, round(count * scale))


# This module's own attack counts at scale 1 (evaluate_adaptive's defaults); `adaptive_scale` multiplies them.
COUNTS = {"steps": 50, "apgd_steps": 100, "restarts": 3, "n_queries": 5000}


def scaled_counts(scale: float = 1.0, **counts) -> dict[str, int]:
    """The counts this module's attacks run at `scale` (each rounded, kept >= 1): COUNTS updated by `counts`."""
    scale, full = _scale(scale), COUNTS | counts
    _counts(**full)
    return {k: _n(v, scale) for k, v in full.items()}


def counts_label(scale: float = 1.0, **counts) -> str:
    """What the adaptive attacks ran, for a figure or a caption: 'PGD 25 steps x 2 restarts, APGD 50 steps x 2
    restarts, Square 2,500 queries (x0.5 of 50, 100, 3, 5,000); AutoAttack at the official standard settings'."""
    c, full = scaled_counts(scale, **counts), COUNTS | counts
    restarts = f"{c['restarts']} restart{'s' if c['restarts'] > 1 else ''}"
    text = (f"PGD {c['steps']} steps x {restarts}, APGD {c['apgd_steps']} steps x {restarts}, "
            f"Square {c['n_queries']:,} queries")
    if c != full:
        text += (f" (x{scale:g} of {full['steps']}, {full['apgd_steps']}, {full['restarts']}, "
                 f"{full['n_queries']:,})")
    return text + "; AutoAttack at the official standard settings"


def _passes(counts: dict) -> int:
    return counts["forward"] + counts["backward"] + 2 * counts["hvp"]


def pgd_adaptive(target: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 alpha: float | None = None, steps: int = 50, restarts: int = 3, seed: int = 0):
    """L-inf PGD (Madry et al., `pgd_loop`) via target's own backward and restarts; keeps any iterate that fools it."""
    check_radius(eps, "eps")
    _counts(steps=steps, restarts=restarts)
    seed = check_seed(seed)
    check_images(x)
    y = check_labels(y, len(x))
    check_model_input(target, x)
    alpha = 2.5 * eps / steps if alpha is None else check_radius(alpha, "alpha")
    gen = torch.Generator().manual_seed(seed)
    x = x.detach()
    x_adv_best, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with inputs_checked():  # checked once above: target's per-step calls skip the scans
        for _ in range(restarts):
            idx = (~fooled).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            x0, y0 = x[idx], y[idx]

            def keep_fooling(x_adv, logits, idx=idx, y0=y0):
                new = (logits.argmax(1) != y0) & ~fooled[idx]
                x_adv_best[idx[new]], fooled[idx[new]] = x_adv[new], True

            pgd_loop(target, x0, uniform_start(x0, eps, gen), lambda logits, y0=y0: cross_entropy(logits, y0),
                     eps, alpha, steps, observe=keep_fooling)
    return x_adv_best


def _craft(name, target, crafter, x, y, eps, counts, n_classes, seed) -> torch.Tensor:
    """x_adv of one attack; AutoAttack is the registry's (the official standard version whatever the counts)."""
    if name == "clean":
        return x
    if name.startswith("transfer"):
        gen = torch.Generator().manual_seed(seed)
        return pgd(crafter, x, y, eps, 2.5 * eps / counts["steps"], counts["steps"], generator=gen)
    if name.startswith("pgd"):
        return pgd_adaptive(target, x, y, eps, steps=counts["steps"], restarts=counts["restarts"], seed=seed)
    if name == "autoattack":  # the registry's AutoAttack, on F: always the official standard settings
        return autoattack(target, x, y, eps, seed=seed, n_classes=n_classes).detach()
    torchattacks = import_torchattacks()
    target = Float32Logits(target)  # torchattacks' numpy bookkeeping has no bf16 (a fast-path autocast)
    if name == "square":
        atk = torchattacks.Square(target, eps=eps, n_queries=counts["n_queries"], n_restarts=1, seed=seed)
    elif name == "apgd-ce":
        atk = torchattacks.APGD(target, eps=eps, steps=counts["apgd_steps"], n_restarts=counts["restarts"],
                                seed=seed)
    else:
        atk = torchattacks.APGDT(target, eps=eps, steps=counts["apgd_steps"], n_restarts=counts["restarts"],
                                 n_classes=n_classes, seed=seed)
    return atk(x, y).detach()


def _settings(name: str, counts: dict) -> str:
    if name in ("clean", "square"):
        return "" if name == "clean" else f"queries={counts['n_queries']}"
    if name == "autoattack":
        aa = attack_settings("aa")
        return (f"official standard: APGD-CE, APGD-T ({AA_TARGETS} targets), FAB-T, {aa['steps']} iterations, "
                f"Square {aa['n_queries']} queries, 1 restart")
    if name.startswith("apgd"):
        return f"steps={counts['apgd_steps']}, restarts={counts['restarts']}"
    restarts = 1 if name.startswith("transfer") else counts["restarts"]
    return f"steps={counts['steps']}, alpha=2.5*eps/steps, restarts={restarts}"


def _jobs(model, xi, attacks, sources, references, grad, tau) -> list[tuple]:
    """(defence, attack, grad label, target, crafter) for every run: TPAP first, then bare and references."""
    jobs = []
    for attack in attacks:
        for name in [f"transfer:{s}" for s in sources] if attack == "transfer" else [attack]:
            mode = name[4:] if name.startswith("pgd-") else "none" if name in ("clean", "square") else grad
            target = crafter = DefendedClassifier(model, xi, grad=mode if mode in GRADS else grad, tau=tau)
            if name.startswith("transfer:"):
                src, mode = sources[name[9:]], f"source:{name[9:]}"
                crafter = src if isinstance(src, BareClassifier) else BareClassifier(src)
            jobs.append(("TPAP", name, mode, target, crafter))
    for defence, ref in {"bare": model, **(references or {})}.items():
        names = dict.fromkeys("pgd" if a.startswith("pgd-") else a for a in attacks if a != "transfer")
        for name in names:
            mode, target = "none" if name in ("clean", "square") else "autograd", BareClassifier(ref)
            jobs.append((defence, name, mode, target, target))
    return jobs


def evaluate_adaptive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xi: float, eps: float,
                      attacks=DEFAULT_ATTACKS, sources: dict | None = None, references: dict | None = None,
                      scale: float = 1.0, grad: str = "bpda", tau: float = 0.5, steps: int = 50,
                      apgd_steps: int = 100, restarts: int = 3, n_queries: int = 5000, batch_size: int = 256,
                      seed: int = 0, progress: bool = True) -> tuple[list[dict], torch.Tensor]:
    """Attack TPAP ('TPAP'), the bare model ('bare') and each reference model; worst cases come last.

    Returns tidy records (defence, attack, grad, eps, xi, n, accuracy, settings, passes_per_pred,
    passes_per_sample, seconds) and a bool matrix `correct` (a row per record, a column per sample).
    'transfer' crafts PGD on each sources[NAME] (default {'bare': model}: the paper's protocol) and
    evaluates F; apgd-ce/apgd-t/autoattack attack F through the `grad` backward. `scale` multiplies
    this module's own counts (steps, apgd_steps, restarts, n_queries; each kept >= 1; the `settings`
    column says what ran) but never AutoAttack's: 'autoattack' is the registry's `autoattack` at the
    official standard settings (APGD-CE, APGD-T with 9 targets, FAB-T, Square 5,000 queries, 100
    iterations) whatever `scale` is. Every attack is seeded from `seed`. passes_per_pred: inner-model passes
    per prediction of the attacked (for transfer: crafting) model; passes_per_sample: all passes / n.
    progress: a progress bar over the (defence, attack) runs, naming the one running.
    """
    xi, eps = check_radius(xi, "xi"), check_radius(eps, "eps")
    _counts(steps=steps, apgd_steps=apgd_steps, restarts=restarts, n_queries=n_queries, batch_size=batch_size)
    scale, tau, seed = _scale(scale), _tau(tau), check_seed(seed)
    check_images(x)
    y = check_labels(y, len(x))
    check_model_input(model, x)
    unknown = [a for a in attacks if a not in ADAPTIVE_ATTACKS]
    if unknown:
        raise ValueError(f"Unknown attack(s) {unknown}; choose from {ADAPTIVE_ATTACKS}.")
    if grad not in GRADS:
        raise ValueError(f"grad={grad!r} is not a gradient mode; choose one of {GRADS}.")
    sources = {"bare": model} if sources is None else sources
    counts = scaled_counts(scale, steps=steps, apgd_steps=apgd_steps, restarts=restarts, n_queries=n_queries)
    with torch.no_grad():
        n_classes = BareClassifier(model)(x[:1]).shape[1]
    records, rows = [], []
    jobs = _jobs(model, xi, attacks, sources, references, grad, tau)
    bar = tqdm(jobs, desc="adaptive attacks", unit="attack", disable=not progress)
    for defence, name, mode, target, crafter in bar:
        bar.set_postfix_str(f"{defence}: {name}")
        crafter.reset_counts()
        t0 = time.perf_counter()
        with inputs_checked():  # x, y and the model were checked once above: no scan per attack step
            x_adv = [_craft(name, target, crafter, x[i:i + batch_size], y[i:i + batch_size], eps, counts, n_classes,
                            seed + i) for i in range(0, len(x), batch_size)]
        seconds, passes = time.perf_counter() - t0, _passes(crafter.counts)
        with torch.no_grad():
            ok = torch.cat([target(xa).argmax(1) for xa in x_adv]) == y
        rows.append(ok)
        records.append({"defence": defence, "attack": name, "grad": mode, "eps": eps,
                        "xi": xi if defence == "TPAP" else None, "n": len(y),
                        "accuracy": ok.float().mean().item(), "settings": _settings(name, counts),
                        "passes_per_pred": crafter.passes_per_prediction() if name != "clean" else None,
                        "passes_per_sample": passes / len(y), "seconds": seconds})
    correct = torch.stack(rows)
    worst, worst_rows = worst_case(records, correct)
    return records + worst, torch.cat([correct, worst_rows])


def worst_case(records: list[dict], correct: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
    """Per-sample worst case per defence: a sample is robust only if it survived every attack (and clean)."""
    out, rows = [], []
    for defence in dict.fromkeys(r["defence"] for r in records):
        idx = [i for i, r in enumerate(records) if r["defence"] == defence and r["attack"] != "worst-case"]
        ok = correct[idx].all(0)
        rows.append(ok)
        first = records[idx[0]]
        out.append({"defence": defence, "attack": "worst-case", "grad": "all", "eps": first["eps"],
                    "xi": first["xi"], "n": len(ok), "accuracy": ok.float().mean().item(),
                    "settings": "min over: " + ", ".join(records[i]["attack"] for i in idx),
                    "passes_per_pred": None,
                    "passes_per_sample": sum(records[i]["passes_per_sample"] for i in idx),
                    "seconds": sum(records[i]["seconds"] for i in idx)})
    return out, torch.stack(rows)


def eps_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xi: float, eps_list, grad: str = "bpda",
              tau: float = 0.5, steps: int = 20, restarts: int = 1, scale: float = 1.0,
              seed: int = 0, progress: bool = True) -> list[dict]:
    """Sanity check (Carlini et al. 2019): adaptive PGD on F must drive accuracy to ~0 as eps grows."""
    _counts(steps=steps, restarts=restarts)
    scale = _scale(scale)
    eps_list = [check_radius(eps, "eps") for eps in eps_list]
    records = []
    for eps in tqdm(eps_list, desc=f"eps sweep (pgd-{grad})", unit="eps", disable=not progress):
        target = DefendedClassifier(model, xi, grad=grad, tau=tau)
        x_adv = pgd_adaptive(target, x, y, eps, steps=_n(steps, scale), restarts=_n(restarts, scale),
                             seed=seed)
        with torch.no_grad():
            acc = (target(x_adv).argmax(1) == y).float().mean().item()
        records.append({"defence": "TPAP", "attack": f"pgd-{grad}", "grad": grad, "eps": eps, "xi": xi,
                        "n": len(y), "accuracy": acc})
    return records


def reaches_zero(records: list[dict], tol: float = 0.05) -> bool:
    """True when the accuracy at the largest eps of an eps_sweep is at most tol (the attack works)."""
    return max(records, key=lambda r: r["eps"])["accuracy"] <= tol


def gradient_masking_flag(records: list[dict], defence: str = "TPAP") -> bool:
    """True when gradient-free Square beats every gradient attack on `defence`: its gradients are masked."""
    rs = [r for r in records if r["defence"] == defence]
    free = [r["accuracy"] for r in rs if r["attack"] == "square"]
    grads = [r["accuracy"] for r in rs if r["attack"] in GRADIENT_ATTACKS]
    if not free or not grads:
        raise ValueError(f"gradient_masking_flag needs a 'square' record and a gradient attack record for "
                         f"defence {defence!r}: run evaluate_adaptive with attacks including 'square' "
                         "and 'pgd-bpda'.")
    return min(free) < min(grads)


def protocol_attack(records: list[dict]) -> str | None:
    """The transfer row of the paper's protocol: PGD crafted on the bare model ('transfer:bare...')."""
    return next((r["attack"] for r in records if r["defence"] == "TPAP" and r["attack"].startswith("transfer:bare")),
                None)
