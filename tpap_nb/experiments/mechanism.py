"""Fig. 3a shown: the mechanism TPAP relies on, measured (notebook 02).

Two views of Sec. 3.3's argument that an FGSM-RO network bends its loss so that the FGSM step lands somewhere
harmless while purification steps back over the boundary:

- real test images: the cross-entropy loss and the margin (true logit minus the largest other logit) of
  f(clip(x + t d, 0, 1)) for t in [-span eps, span eps], with d the FGSM sign direction and seeded random sign
  directions (`loss_along_directions`, `plot_directions`, `directions_sentence`), for any network;
- a 2-D toy: two moons in the unit square, a small MLP trained with Algorithm 1 (FGSM without random start,
  alpha = eps, loss on the adversarial batch only), where the FGSM, PGD and purification steps are arrows
  (`toy_study`, `plot_toy`, `toy_sentence`). Its FGSM, PGD and purification are the kit's, written for points
  (tests/test_mechanism.py checks them against `attacks.fgsm`, `attacks.pgd` and `purify.purify_with_pred`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks.cw import margin  # f(x, y) - max_{k != y} f(x, k): the kit's one margin (CW's)
from ..attacks.registry import radius
from ..models import eval_mode
from ..purify import purify
from ..stats import paired, pct_ci

# ----------------------------------------------------------------------------- real images: loss along d


def _sign_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(grad_x CE(f(x), y)), the loss summed over the batch (Eq. 1 and Eq. 7's direction)."""
    with torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_in), y, reduction="sum"), x_in)
    return g.sign()


def loss_along_directions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 41,
                          span: float = 2.0, n_random: int = 4, seed: int = 0, xi: float | None = None,
                          batch: int = 256) -> dict:
    """Fig. 3a on real images: CE loss and margin of f(clip(x + t d, 0, 1)), t in [-span eps, span eps].

    d is the FGSM sign direction of each image and `n_random` seeded random sign directions. The FGSM example
    is the point t = eps of the FGSM curve. Purification (Eq. 7-8, xi, default eps) of the clean image and of the
    FGSM example lands off the path in general: each is placed at the t of the nearest grid point of the path
    clip(x + t d, 0, 1) (the purified clean image is on it, at t = xi, where y_pred = y). Arrays:
    loss/margin "fgsm" (n, steps), "random" (n, n_random, steps); "pur_clean", "pur_fgsm" per image. Eval mode.
    """
    xi = eps if xi is None else xi
    per_eps = (steps - 1) / (2 * span)  # grid points per eps: t = 0 and t = eps must be on the grid
    if per_eps < 1 or abs(per_eps - round(per_eps)) > 1e-9:
        raise ValueError(f"steps = {steps}, span = {span}: (steps - 1) / (2 span) must be a whole number so that "
                         f"t = 0 and t = eps are grid points, e.g. steps = {int(20 * span) + 1}.")
    per_eps = round(per_eps)
    t = eps * np.arange(-round(span * per_eps), round(span * per_eps) + 1) / per_eps
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).view(1, 1, -1, *[1] * (x.dim() - 1))
    g = torch.Generator().manual_seed(seed)
    d_rand = torch.randint(0, 2, (len(x), n_random, *x.shape[1:]), generator=g, dtype=torch.int8)
    chunk = max(1, 4096 // ((1 + n_random) * steps))  # images per chunk: at most ~4,096 points in memory
    loss, marg, pur = [], [], {"pur_clean": [], "pur_fgsm": []}
    with eval_mode(model):
        for lo in range(0, len(x), chunk):
            xc, yc = x[lo:lo + chunk], y[lo:lo + chunk]
            d_fgsm = _sign_grad(model, xc, yc)
            dirs = torch.cat([d_fgsm[:, None], d_rand[lo:lo + chunk].to(x) * 2 - 1], 1)  # (c, 1 + R, C, H, W)
            pts = (xc[:, None, None] + tt * dirs[:, :, None]).clamp(0, 1)  # (c, 1 + R, steps, C, H, W)
            flat, labels = pts.flatten(0, 2), yc.repeat_interleave(dirs.shape[1] * steps)
            with torch.no_grad():
                logits = torch.cat([model(flat[i:i + batch]).float() for i in range(0, len(flat), batch)])
            shape = (len(xc), dirs.shape[1], steps)
            loss.append(F.cross_entropy(logits, labels, reduction="none").view(shape).cpu().numpy())
            marg.append(margin(logits, labels).view(shape).cpu().numpy())
            for key, start in (("pur_clean", xc), ("pur_fgsm", (xc + eps * d_fgsm).clamp(0, 1))):
                x_pur = purify(model, start, xi)
                with torch.no_grad():
                    out = model(x_pur).float()
                near = (pts[:, 0] - x_pur[:, None]).flatten(2).square().sum(2).argmin(1)  # nearest point of the path
                pur[key].append((t[near.cpu().numpy()], F.cross_entropy(out, yc, reduction="none").cpu().numpy(),
                                 margin(out, yc).cpu().numpy()))
    loss, marg = np.concatenate(loss), np.concatenate(marg)
    pur = {k: dict(zip(("t", "loss", "margin"), map(np.concatenate, zip(*v)))) for k, v in pur.items()}
    return {"t": t, "eps": eps, "xi": xi, "n": len(x), "n_random": n_random, "seed": seed, "span": span,
            "loss": {"fgsm": loss[:, 0], "random": loss[:, 1:]}, "margin": {"fgsm": marg[:, 0], "random": marg[:, 1:]},
            "clean_loss": loss[:, 0, int(np.abs(t).argmin())], **pur}


def grid_index(curves: dict, value: float) -> int:
    """Index of the grid point nearest t = value."""
    return int(np.abs(curves["t"] - value).argmin())


def bends(curves: dict, rel: float = 0.25) -> dict:
    """Per image, the FGSM margin from the clean image (t = 0) to the FGSM example (t = eps): does it dip and come
    back (by more than rel x the dip: the loss rises, then falls), fall throughout, or not fall?"""
    z, e = grid_index(curves, 0.0), grid_index(curves, curves["eps"])
    m = curves["margin"]["fgsm"]
    seg = m[:, z:e + 1]
    tol = 0.02 * np.abs(m).max(1) + 1e-6  # scale-free: 2 % of the curve's own range of margins
    low = seg.min(1)
    dip, back = seg[:, 0] - low, seg[:, -1] - low
    falls = dip > tol
    bend = falls & (back > np.maximum(tol, rel * dip))
    return {"bend": bend, "falls": falls & ~bend, "flat": ~falls, "dip": dip, "back": back,
            "low_t": curves["t"][z + seg.argmin(1)], "margin_clean": m[:, z], "margin_at_eps": m[:, e],
            "correct_at_eps": m[:, e] > 0, "random_at_eps": curves["margin"]["random"][:, :, e]}


def _k(mask) -> str:
    return f"{int(np.sum(mask))} of {np.size(mask)}"


def _shape(b: dict) -> str:
    """'dips and comes back on 30, falls throughout on 15, does not fall on 5 of 50 images' from `bends`."""
    kinds = {"dips and comes back": b["bend"], "falls throughout": b["falls"], "does not fall": b["flat"]}
    return ", ".join(f"{k} on {int(v.sum())}" for k, v in kinds.items() if v.any()) + f" of {len(b['bend'])} images"


def directions_sentence(by_net: dict[str, dict]) -> str:
    """What the curves show, per network: the margin from x to the FGSM example, the FGSM point, random directions."""
    first = next(iter(by_net.values()))
    eps, n, xi = first["eps"], first["n"], first["xi"]
    parts, flags, rand, pur = [], {}, [], []
    for name, c in by_net.items():
        b = bends(c)
        flags[name] = b["bend"]
        parts.append(f"for **{name}** the margin {_shape(b)}, and its median goes from "
                     f"{np.median(b['margin_clean']):.2f} at the clean image to {np.median(b['margin_at_eps']):.2f} at "
                     f"the FGSM example, which is classified correctly on {_k(b['correct_at_eps'])}")
        rand.append(f"{np.median(b['random_at_eps']):.2f} ({name})")
        pur.append(f"{_k(c['pur_clean']['margin'] > 0)} purified clean images and {_k(c['pur_fgsm']['margin'] > 0)} "
                   f"purified FGSM examples are classified correctly ({name})")
    text = (f"On {n} test images (eps = {radius(eps)}), along the FGSM direction from the clean image (t = 0) to its "
            f"FGSM example (t = eps), " + "; ".join(parts) + f". Along {first['n_random']} random sign directions "
            f"the median margin at t = eps is " + ", ".join(rand) + ".")
    if len(flags) == 2:
        (a, fa), (b_, fb) = flags.items()
        r = paired(fa, fb)
        text += (f" The dip-and-return is {'more' if r['diff'] > 0 else 'less'} frequent for {a} than for {b_}"
                 if r["decided"] else f" {a} and {b_} do not differ in how often the margin dips and comes back "
                                      f"at n = {n}")
        text += f" ({_k(fa)} vs {_k(fb)} images, McNemar p = {r['p_mcnemar']:.2g})."
    return text + f" With xi = {radius(xi)}: " + "; ".join(pur) + "."


def plot_directions(by_net: dict[str, dict], n_draw: int = 6, title: str = ""):
    """Loss (top, log) and margin (bottom) vs t / eps per network for the first n_draw images: the FGSM direction
    bold, random sign directions thin, the FGSM example, both purified points and the boundary (margin = 0)."""
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, len(by_net), figsize=(5.2 * len(by_net), 6.8), squeeze=False, sharex=True,
                             layout="constrained")
    colors = plt.get_cmap("tab10").colors
    for j, (name, c) in enumerate(by_net.items()):
        s, e, k = c["t"] / c["eps"], grid_index(c, c["eps"]), min(n_draw, c["n"])
        for row, key in enumerate(("loss", "margin")):
            ax = axes[row, j]
            for i in range(k):
                col = colors[i % len(colors)]
                for r in c[key]["random"][i]:
                    ax.plot(s, r, color=col, lw=0.6, alpha=0.45)
                ax.plot(s, c[key]["fgsm"][i], color=col, lw=2.2)
                ax.plot(1.0, c[key]["fgsm"][i, e], "o", color=col, ms=6, mec="black", mew=0.6)
                for pk, mk, ms in (("pur_clean", "D", 6), ("pur_fgsm", "*", 11)):
                    ax.plot(c[pk]["t"][i] / c["eps"], c[pk][key][i], mk, color=col, ms=ms, mec="black", mew=0.6)
            for v in (0, 1):
                ax.axvline(v, color="0.5", lw=0.8, ls=":")
            if key == "loss":
                span_decades = np.log10(c["loss"]["fgsm"][:k].max() / max(c["loss"]["fgsm"][:k].min(), 1e-12))
                ax.set_yscale("log" if span_decades > 1.5 else "linear")  # log only where losses span decades
                ax.set_ylabel(f"cross-entropy loss{' (log scale)' if span_decades > 1.5 else ''}")
            else:
                ax.axhline(0, color="black", lw=1.2, ls="--")
                ax.set_xlabel(f"t / eps (eps = {radius(c['eps'])}; x + t d clipped to [0, 1])")
                ax.set_ylabel("margin (true - best other logit)")
            ax.set_title(f"{name}: {key} along x + t d, {k} of the {c['n']} test images", fontsize=9)
    xi = radius(c["xi"])
    handles = [Line2D([], [], color="0.2", lw=2.2, label="d = FGSM sign direction"),
               Line2D([], [], color="0.2", lw=0.6,
                      label=f"d = {c['n_random']} random sign directions (seed {c['seed']})"),
               Line2D([], [], color="0.6", marker="o", ls="", mec="black", label="FGSM example (t = eps)"),
               Line2D([], [], color="0.6", marker="D", ls="", mec="black",
                      label=f"purified clean image (xi = {xi}), at the nearest t"),
               Line2D([], [], color="0.6", marker="*", ms=11, ls="", mec="black",
                      label=f"purified FGSM example (xi = {xi}), at the nearest t"),
               Line2D([], [], color="black", ls="--", label="decision boundary (margin = 0)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7.5, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------- the 2-D toy

# Chosen by a search of a few seconds each (moons noise 0.05 / 0.1, blobs; eps 0.05-0.25; width 64-256; 100-300
# epochs): at eps = 0.18 the network classifies the training points' FGSM examples (above 90 %) but not their
# PGD-20 examples (below 10 %), Sec. 3.2's definition, on seeds 0-2. Smaller radii did not overfit.
TOY = dict(n=1000, noise=0.05, eps=0.18, xi=0.18, width=128, epochs=300, lr=3e-3, batch_size=100, pgd_steps=20,
           seed=0)


def toy_settings(profile_toy: Mapping | None = None, **overrides) -> dict:
    """The toy's settings: TOY, a profile's changes (cfg['toy'], resolved by get_profile from config.TOY_SIZE;
    smoke: tiny), then any override that is not None (xi follows an overridden eps unless given: the paper's
    xi = eps)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if "eps" in given and "xi" not in given:
        given["xi"] = given["eps"]
    return TOY | dict(profile_toy or {}) | given


def toy_data(n: int, noise: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two interleaved moons scaled into [0.1, 0.9]^2: n training and n test points (x float32, y int64)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(2 * n, noise=noise, random_state=seed)
    X = 0.1 + 0.8 * (X - X.min(0)) / (X.max(0) - X.min(0))
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    return X[:n], y[:n], X[n:], y[n:]


def toy_mlp(width: int = 128, seed: int = 0) -> nn.Module:
    """2 -> width -> width -> 2, ReLU, initialised from `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))


def toy_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 1-2 for points: clip(x + eps sign(grad_x CE(f(x), y)), 0, 1)."""
    return (x + eps * _sign_grad(model, x, y)).clamp(0, 1)


def toy_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 20,
            alpha: float | None = None, seed: int = 0) -> torch.Tensor:
    """L-inf PGD for points: uniform start (seeded), `steps` steps of alpha (eps / 4), projected on the ball and box."""
    alpha = eps / 4 if alpha is None else alpha
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
    x_adv = (x + (noise * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = torch.min(torch.max(x_adv + alpha * _sign_grad(model, x_adv, y), x - eps), x + eps).clamp(0, 1)
    return x_adv


def toy_purify(model: nn.Module, x: torch.Tensor, xi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6-8 for points: (clip(x + xi sign(grad_x CE(f(x), y_pred)), 0, 1), y_pred)."""
    with torch.no_grad():
        y_pred = model(x).argmax(1)
    return (x + xi * _sign_grad(model, x, y_pred)).clamp(0, 1), y_pred


def train_toy(s: dict) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Algorithm 1 on the moons: each batch replaced by its FGSM examples (alpha = eps, no random start), Adam."""
    data = toy_data(s["n"], s["noise"], s["seed"])
    x_tr, y_tr = data[0], data[1]
    model = toy_mlp(s["width"], s["seed"])
    opt = torch.optim.Adam(model.parameters(), s["lr"])
    g = torch.Generator().manual_seed(s["seed"])
    for _ in range(s["epochs"]):
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(x_tr), s["batch_size"]):
            xb, yb = x_tr[perm[i:i + s["batch_size"]]], y_tr[perm[i:i + s["batch_size"]]]
            loss = F.cross_entropy(model(toy_fgsm(model, xb, yb, s["eps"])), yb)  # Eq. 4 on x_a only
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data


@contextlib.contextmanager
def _one_thread():
    """Tiny tensors run fastest on one thread (several threads spin against each other on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def toy_study(settings: dict | None = None) -> dict:
    """Train the toy and measure it: per-point verdicts (bare and purified) on clean, FGSM and PGD inputs."""
    with _one_thread():
        return _toy_study(toy_settings(**(settings or {})))


def _toy_study(s: dict) -> dict:
    model, (x_tr, y_tr, x, y) = train_toy(s)
    eps, xi = s["eps"], s["xi"]

    def verdicts(xs, ys):
        ins = {"clean": xs, "fgsm": toy_fgsm(model, xs, ys, eps), "pgd": toy_pgd(model, xs, ys, eps, s["pgd_steps"])}
        pur = {k: toy_purify(model, v, xi)[0] for k, v in ins.items()}
        with torch.no_grad():
            ok = {k: (model(v).argmax(1) == ys).numpy() for k, v in ins.items()}
            ok |= {f"tpap_{k}": (model(v).argmax(1) == ys).numpy() for k, v in pur.items()}
        return ins, pur, ok

    ins, pur, ok = verdicts(x, y)
    train_ok = verdicts(x_tr, y_tr)[2]
    overfits = train_ok["fgsm"].mean() > 0.9 and train_ok["pgd"].mean() < 0.1  # Sec. 3.2, on the training set
    return {"settings": s, "model": model, "x": x, "y": y, "inputs": ins, "purified": pur, "ok": ok,
            "train_ok": train_ok, "overfits": bool(overfits), "x_train": x_tr, "y_train": y_tr}


def toy_label(s: dict) -> str:
    """What ran, in words: data, network, Algorithm 1's radius and schedule, the attacks and xi."""
    return (f"two moons (noise {s['noise']:g}), n = {s['n']:,} train / {s['n']:,} test, MLP 2-{s['width']}-"
            f"{s['width']}-2, Algorithm 1 at eps = {s['eps']:g} ({s['epochs']} epochs, batch {s['batch_size']}, "
            f"Adam lr {s['lr']:g}, seed {s['seed']}); PGD-{s['pgd_steps']} ({s['pgd_steps']} x {s['eps'] / 4:.3g}, "
            f"random start); xi = {s['xi']:g}")


def toy_sentence(study: dict) -> str:
    """The toy in words: Sec. 3.2's test on the training points, then bare and purified test accuracies."""
    s, ok, tr = study["settings"], study["ok"], study["train_ok"]
    n, steps = len(study["y"]), s["pgd_steps"]
    acc = {k: pct_ci(int(v.sum()), v.size, short=True) for k, v in ok.items()}
    verdict = ("robustly overfits FGSM in Sec. 3.2's sense" if study["overfits"]
               else "does **not** robustly overfit FGSM in Sec. 3.2's sense (FGSM above 90 %, PGD below 10 %)")
    text = (f"Trained with Algorithm 1 at eps = {s['eps']:g}, the toy network {verdict}: on the training points FGSM "
            f"{100 * tr['fgsm'].mean():.1f} %, PGD-{steps} {100 * tr['pgd'].mean():.1f} %. On the {n:,} test points "
            f"(accuracy with its 95 % Wilson interval), bare: clean {acc['clean']}, FGSM {acc['fgsm']}, "
            f"PGD-{steps} {acc['pgd']}; purified (xi = {s['xi']:g}): clean {acc['tpap_clean']}, "
            f"FGSM {acc['tpap_fgsm']}, PGD-{steps} {acc['tpap_pgd']}.")
    r = paired(ok["tpap_pgd"], ok["pgd"])
    if r["decided"]:
        text += (f" Purification {'raises' if r['diff'] > 0 else 'lowers'} PGD-{steps} accuracy by "
                 f"{abs(r['diff']):.1f} points (95 % CI {r['low']:.1f} to {r['high']:.1f}) on the same points.")
    else:
        text += f" Purified and bare PGD-{steps} accuracy do not differ at n = {n:,}."
    if ok["fgsm"].mean() > ok["clean"].mean():
        text += (" FGSM accuracy above clean accuracy is label leaking: the network learned where the FGSM step "
                 "of each point lands, not the point itself.")
    return text


def toy_points(study: dict, k: int = 5, seed: int = 0) -> np.ndarray:
    """k test points (seeded) whose FGSM example is classified correctly and whose PGD example is not, when any."""
    ok = study["ok"]
    pool = np.flatnonzero(ok["fgsm"] & ~ok["pgd"])
    pool = pool if len(pool) >= k else np.arange(len(study["y"]))
    return np.sort(np.random.default_rng(seed).choice(pool, size=min(k, len(pool)), replace=False))


def plot_toy(study: dict, idx: np.ndarray, grid: int = 300):
    """Decision regions, the chosen points, their FGSM / PGD examples and the purification step, as arrows."""
    s, model = study["settings"], study["model"]
    u = torch.linspace(0, 1, grid)
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    with torch.no_grad():
        m = margin(model(torch.stack([gx.ravel(), gy.ravel()], 1)), torch.ones(grid * grid, dtype=torch.long))
    m = m.view(grid, grid).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
    cls = ("#1f77b4", "#d62728")
    for ax, kind, name in zip(axes, ("fgsm", "pgd"), ("FGSM", f"PGD-{s['pgd_steps']}")):
        ax.contourf(u, u, m, levels=[-1e9, 0, 1e9], colors=[cls[0], cls[1]], alpha=0.13)
        ax.contour(u, u, m, levels=[0], colors="black", linewidths=1.2)
        xt, yt = study["x_train"].numpy(), study["y_train"].numpy()
        ax.scatter(xt[:, 0], xt[:, 1], c=[cls[v] for v in yt], s=3, alpha=0.25, lw=0)
        for i in idx:
            x0 = study["x"][i].numpy()
            xa, xp = study["inputs"][kind][i].numpy(), study["purified"][kind][i].numpy()
            col = cls[int(study["y"][i])]
            ax.add_patch(plt.Rectangle(x0 - s["eps"], 2 * s["eps"], 2 * s["eps"], fill=False, ec=col, lw=0.7, ls=":"))
            ax.plot(*x0, "o", color=col, mec="black", ms=7)
            ax.annotate("", xy=xa, xytext=x0, arrowprops=dict(arrowstyle="-|>", color="#d95f02", lw=1.6))
            ax.annotate("", xy=xp, xytext=xa, arrowprops=dict(arrowstyle="-|>", color="#e7298a", lw=1.6, ls="--"))
        acc, pur = (pct_ci(int(v.sum()), v.size, short=True) for v in (study["ok"][kind], study["ok"][f"tpap_{kind}"]))
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal",
               title=f"x -> {name} example (orange) -> purified, xi = {s['xi']:g} (pink)\n"
                     f"test accuracy (95 % Wilson): bare {acc}, purified {pur}, n = {len(study['y']):,}")
        ax.title.set_fontsize(9)
    import textwrap

    fig.suptitle(textwrap.fill(f"Fig. 3a in the plane: {toy_label(s)}. Boxes: the eps-ball of each drawn point; "
                               f"{len(idx)} test points (seeded) with a correct FGSM and a wrong PGD example", 120),
                 fontsize=8.5)
    return fig


def toy_numbers(study: dict) -> dict:
    """The toy's accuracies (%) and settings, for the figure's provenance JSON."""
    acc = {k: round(100 * float(v.mean()), 2) for k, v in study["ok"].items()}
    acc |= {f"train_{k}": round(100 * float(v.mean()), 2) for k, v in study["train_ok"].items()}
    return {"toy": study["settings"], "accuracy": acc, "overfits": study["overfits"], "n": len(study["y"])}


def curve_numbers(by_net: dict[str, dict]) -> dict:
    """Per network, the counts and medians the sentence reads, for the figure's provenance JSON."""
    out = {}
    for name, c in by_net.items():
        b = bends(c)
        out[name] = {"n": c["n"], "dips_and_returns": int(b["bend"].sum()), "falls": int(b["falls"].sum()),
                     "does_not_fall": int(b["flat"].sum()), "correct_at_eps": int(b["correct_at_eps"].sum()),
                     "median_margin_clean": float(np.median(b["margin_clean"])),
                     "median_margin_at_eps": float(np.median(b["margin_at_eps"])),
                     "median_margin_random_at_eps": float(np.median(b["random_at_eps"])),
                     "pur_clean_correct": int((c["pur_clean"]["margin"] > 0).sum()),
                     "pur_fgsm_correct": int((c["pur_fgsm"]["margin"] > 0).sum())}
    first = next(iter(by_net.values()))
    return out | {k: first[k] for k in ("eps", "xi", "n_random", "seed", "span")} | {"steps": len(first["t"])}
