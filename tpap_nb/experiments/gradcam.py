"""Fig. 6: Grad-CAM attention maps, with numbers that measure what the paper reads off them.

Grad-CAM (Selvaraju et al. 2017) comes from pytorch-grad-cam; `gradcam_maps` wraps it so that it
leaves the model as it found it (mode, weight gradients, no hooks). The measures: how much of a
map's mass lies on the object, on its outline or its interior, and how similar two maps are.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..attacks.registry import build_attack
from ..checks import check_images
from ..evaluate import predict
from ..models import eval_mode
from ..plots import plot_cam_grid
from ..purify import purify


def find_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The Grad-CAM target layer: `model.cam_layer`, or the submodule with dotted name `name` (e.g. 'body.3')."""
    if not name:
        if not hasattr(model, "cam_layer"):
            raise AttributeError(f"{type(model).__name__} has no cam_layer; pass the layer's dotted name instead.")
        return model.cam_layer
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Sequential)) and n]
        raise ValueError(f"The model has no submodule {name!r}; some candidates: {convs[:12]}.")
    return modules[name]


def gradcam_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None = None,
                 layer: nn.Module | None = None, batch_size: int = 128, upsample: str = "nearest") -> dict:
    """Grad-CAM maps of `x` for class `targets` (default: the predicted class), at the layer's and the image's size.

    Returns {'cam', 'cam_lowres', 'y_pred', 'conf', 'layer_hw'}. 'cam_lowres' (N, h, w) is
    pytorch-grad-cam's own map at the target layer (default `model.cam_layer`), ReLU(sum_k alpha_k A_k),
    *not* rescaled, so maps of different inputs share one scale; 'cam' (N, H, W) is it upsampled to
    the image: `upsample='nearest'` (default) repeats each map cell as a block of pixels, so the
    figure shows the resolution the layer has; 'bilinear' smooths it (the library's own output,
    which also min-max scales each map, is not used). The model keeps its mode, its weights' .grad
    and its hook lists; the weights get no gradient.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if upsample not in ("nearest", "bilinear"):
        raise ValueError(f"upsample={upsample!r}: use 'nearest' (map cells as pixel blocks) or 'bilinear'.")
    check_images(x)
    layer = layer if layer is not None else find_layer(model)
    y_pred, conf = predict(model, x, confidence=True)
    targets = y_pred if targets is None else targets.to(x.device)
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    lowres, layer_hw = [], None
    with eval_mode(model):  # pytorch-grad-cam sets eval mode and never restores it
        try:
            for p in params:  # weights get no gradient: the input carries it to the target layer instead
                p.requires_grad_(False)
            # float32 even inside a bf16 runtime: pytorch-grad-cam turns activations into numpy arrays
            with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
                for i in range(0, len(x), batch_size):
                    xb = x[i:i + batch_size].detach().clone().requires_grad_(True)
                    tb = [ClassifierOutputTarget(int(c)) for c in targets[i:i + batch_size]]
                    raw = None
                    # As a context manager, GradCAM removes its forward hooks on exit. Its __exit__
                    # also swallows IndexError (prints it and returns True), hence the check below.
                    with GradCAM(model=model, target_layers=[layer]) as cam:
                        cam(input_tensor=xb, targets=tb)
                        store = cam.activations_and_grads
                        acts, grads = store.activations[0].numpy(), store.gradients[0].numpy()
                        raw = np.maximum(cam.get_cam_image(xb, layer, tb, acts, grads), 0)  # Grad-CAM, layer size
                        layer_hw = tuple(acts.shape[-2:])
                        cam.outputs = None  # drop the retained graph now
                    if raw is None:
                        raise RuntimeError("pytorch-grad-cam failed inside its context manager "
                                           "(see the message above).")
                    lowres.append(np.asarray(raw, dtype=np.float32))
        finally:
            for p, (req, grad) in zip(params, saved):
                p.requires_grad_(req)
                p.grad = grad
    low = np.concatenate(lowres) if lowres else np.zeros((0, 1, 1), np.float32)
    size = tuple(x.shape[-2:])
    up = torch.nn.functional.interpolate(torch.from_numpy(low)[:, None], size=size, mode=upsample,
                                         **({} if upsample == "nearest" else {"align_corners": False}))
    return {"cam": up[:, 0].clamp_(min=0).numpy(), "cam_lowres": low, "y_pred": y_pred.cpu(), "conf": conf.cpu(),
            "layer_hw": layer_hw}


def spatial_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, int]]]:
    """(dotted name, output h x w) of each block of `model.body` (else of the model), in forward order."""
    parent, prefix = (model.body, "body.") if hasattr(model, "body") else (model, "")
    shapes = {}

    def keep(name):
        def hook(module, inputs, output):
            shapes.setdefault(name, tuple(output.shape))  # returns None: the output is left alone
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in parent.named_children()]
    try:
        predict(model, x[:1])
    finally:
        for h in hooks:
            h.remove()
    return [(prefix + n, s[-2:]) for n, s in shapes.items() if len(s) == 4]


def conv_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, int]]]:
    """(dotted name, output h x w) of every conv layer and every block built of them, in the order their outputs
    are computed, probed with forward hooks on one image; a block that hands on its last child's tensor unchanged
    (a residual stage ending in its last block) is listed once, under the child's name."""
    seen, out = [], []  # the outputs are kept alive while probing, so no two of them share an id

    def keep(name):
        def hook(module, inputs, output):
            if torch.is_tensor(output) and output.dim() == 4 and not any(output is t for t in seen):
                seen.append(output)
                out.append((name, tuple(output.shape[-2:])))
        return hook

    candidates = [(n, m) for n, m in model.named_modules()
                  if n and any(isinstance(c, nn.Conv2d) for c in m.modules())]
    hooks = [m.register_forward_hook(keep(n)) for n, m in candidates]
    try:
        predict(model, x[:1])
    finally:
        for h in hooks:
            h.remove()
    return out


def gradcam_layer(model: nn.Module, x: torch.Tensor, min_side: int = 4) -> tuple[str, int]:
    """Fig. 6's Grad-CAM layer: (dotted name, map side) of the deepest conv layer or block whose map is still at
    least `min_side` cells on a side; when none is, the highest-resolution one (the deepest of those)."""
    maps = conv_maps(model, x)
    if not maps:
        raise ValueError(f"{type(model).__name__} has no conv layer with a spatial map on these inputs; "
                         "Grad-CAM needs one.")
    sides = [(name, min(hw)) for name, hw in maps]
    fine = [t for t in sides if t[1] >= min_side]
    if fine:
        return fine[-1]
    best = max(side for _, side in sides)
    return [t for t in sides if t[1] == best][-1]


def layer_choice_note(model: nn.Module, x: torch.Tensor, layer_name: str) -> str:
    """One sentence: which layer Grad-CAM reads, its map size against the input size, what that resolution allows."""
    maps = dict(conv_maps(model, x))
    if layer_name not in maps:
        raise ValueError(f"{layer_name!r} is not a conv layer or block of this model on these inputs; "
                         f"candidates: {list(maps)[-8:]}.")
    (h, w), (H, W) = maps[layer_name], tuple(x.shape[-2:])
    deepest_name, (dh, dw) = list(maps.items())[-1]
    cell = f"{H / h:.3g}x{W / w:.3g}"
    text = (f"Grad-CAM reads `{layer_name}`, whose {h}x{w} map on {H}x{W} inputs gives one cell per {cell} pixels"
            + (f" (the deepest conv block, `{deepest_name}`, has only {dh}x{dw})" if deepest_name != layer_name
               else ""))
    if min(h, w) >= 4:
        text += (f": enough to say which part of the image ({h * w} cells) carries the evidence and to compare "
                 "maps cell by cell, not to trace an outline finer than a cell.")
    else:
        text += (f": {h * w} cells say only roughly where (which half or quarter), so correlations between maps "
                 "are all it supports; object vs background, outline vs interior are beyond it.")
    return text


def count_hooks(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks registered on any submodule (0 for a clean model)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def pick_examples(y: torch.Tensor, classes: str | Sequence, class_names: Sequence[str], per_class: int,
                  seed: int | None = None) -> list[int]:
    """Indices of `per_class` examples of each class in `classes` (names or indices, comma-separated).

    With `seed`, a seeded random draw among the class's examples (not chosen for looking good, not
    the first ones either); without, the first `per_class`.
    """
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    names = [str(c) for c in class_names]
    picked = []
    for c in classes:
        if str(c) in names:
            k = names.index(str(c))
        elif str(c).isdigit() and int(c) < len(names):
            k = int(c)
        else:
            raise ValueError(f"Unknown class {c!r}; this data set has classes {names}.")
        idx = (y.cpu() == k).nonzero().flatten()
        if seed is not None:  # a seeded draw, shown in test-set order
            idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + k))[:per_class]]
            idx = idx.sort().values
        idx = idx[:per_class].tolist()
        if not idx:
            raise ValueError(f"No test example of class {names[k]!r} in the first {len(y)} test images.")
        picked += idx
    return picked


def object_mask(x: torch.Tensor, threshold: float = 0.25) -> np.ndarray:
    """Pixels that differ from the image's border colour (median of its edge pixels) by more than `threshold`.

    On digits this is the ink; on natural images it is a crude foreground proxy only.
    """
    check_images(x)
    x = x.detach().cpu()
    edge = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)  # (N, C, border)
    bg = edge.median(dim=2).values[:, :, None, None]
    return ((x - bg).abs().amax(1) > threshold).numpy()


def outline_interior(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an object mask (N, H, W) into its outline (object pixels with a 4-neighbour outside) and interior."""
    pad = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    inner = mask & pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1] & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:]
    return mask & ~inner, inner


def cam_mass(cam: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Fraction of each map's total mass inside `region` (NaN for an all-zero map)."""
    total = cam.reshape(len(cam), -1).sum(1)
    inside = (cam * region).reshape(len(cam), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def cam_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation, per image, between two stacks of maps (N, H, W); NaN where a map is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), np.nan)


def attention_records(cams: dict[str, np.ndarray], preds: dict[str, torch.Tensor], y: torch.Tensor,
                      mask: np.ndarray, reference: str, model_name: str) -> list[dict]:
    """Per-example tidy records for Fig. 6: correct, mass and area of object/outline/interior, correlation.

    The correlation is with the map of input `reference` of the same example (e.g. 'x_c').
    """
    outline, inner = outline_interior(mask)
    y = y.cpu().numpy()
    area = {r: m.reshape(len(m), -1).mean(1) for r, m in (("object", mask), ("outline", outline),
                                                          ("interior", inner))}
    rows = []
    for col, cam in cams.items():
        mass = {r: cam_mass(cam, m) for r, m in (("object", mask), ("outline", outline), ("interior", inner))}
        corr = cam_correlation(cam, cams[reference])
        correct = preds[col].cpu().numpy() == y
        empty = cam.reshape(len(cam), -1).max(1) <= 0
        for i in range(len(y)):
            rows.append({"model": model_name, "input": col, "index": i, "correct": bool(correct[i]),
                         "empty": bool(empty[i]), "corr_with_" + reference: float(corr[i])}
                        | {f"{r}_mass": float(mass[r][i]) for r in mass}
                        | {f"{r}_area": float(area[r][i]) for r in area})
    return rows


FIG6_COLUMNS = ("x_c", "x_pgd20", "x_c.pur", "x_pgd20.pur")


def fig6_attention(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, xi: float,
                   steps: int = 20, layer: nn.Module | None = None, seed: int = 0, upsample: str = "nearest",
                   progress: bool = True, desc: str = "Grad-CAM") -> dict:
    """Fig. 6 for one model: x_c, its PGD-`steps` version, both purified (Eq. 7-8), and their Grad-CAM maps.

    The attack is crafted on the bare model (the paper's protocol); each map explains the class
    the model predicts for that input. Returns {'inputs', 'cam', 'y_pred', 'conf'} keyed by
    FIG6_COLUMNS, and 'layer_hw'. Maps are `gradcam_maps`'s (one scale for all, `upsample` to the image), at
    `layer` (default: `gradcam_layer`, the deepest conv map at least 4 cells on a side).
    """
    from tqdm.auto import tqdm

    # the registry's pgd20 (the kit's one PGD-20; pass the profile's `pgd20_step` and seed)
    x_pgd = build_attack("pgd20", model, eps=eps, alpha=alpha, steps=steps, seed=seed)(x, y)
    if layer is None:  # Fig. 6's layer: the deepest conv map still 4 cells on a side
        layer = find_layer(model, gradcam_layer(model, x)[0])
    inputs = {"x_c": x, "x_pgd20": x_pgd, "x_c.pur": purify(model, x, xi), "x_pgd20.pur": purify(model, x_pgd, xi)}
    out = {"inputs": inputs, "cam": {}, "y_pred": {}, "conf": {}, "layer_hw": None}
    for name, xin in tqdm(inputs.items(), desc=desc, total=len(inputs), disable=not progress):
        maps = gradcam_maps(model, xin, layer=layer, upsample=upsample)
        out["cam"][name], out["y_pred"][name], out["conf"][name] = maps["cam"], maps["y_pred"], maps["conf"]
        out["layer_hw"] = maps["layer_hw"]
    return out


def fig6_summary(records) -> pd.DataFrame:
    """Mean of each attention measure per (model, input); 'enrich' = mass share / area share (1 = chance)."""
    df = pd.DataFrame(records)
    g = df.groupby(["model", "input"], sort=False)
    out = g.agg(accuracy=("correct", "mean"), empty_maps=("empty", "mean"), corr_with_x_c=("corr_with_x_c", "mean"),
                object_mass=("object_mass", "mean"), object_area=("object_area", "mean"),
                outline_mass=("outline_mass", "mean"), outline_area=("outline_area", "mean"),
                interior_mass=("interior_mass", "mean"), interior_area=("interior_area", "mean"))
    for r in ("object", "outline", "interior"):
        out[f"{r}_enrich"] = out[f"{r}_mass"] / out[f"{r}_area"]
    return out


def paired_verdict(diff, min_effect: float = 0.0, z: float = 2.0) -> tuple[str, str]:
    """Verdict on 'the claimed quantity is larger' from per-example differences: mean beyond z standard errors.

    Returns (verdict, 'mean +- z*SE (n)'), verdict one of 'agrees', 'opposite', 'no clear difference',
    or 'real but small' when the mean is beyond z SE yet below `min_effect` in size.
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return "cannot tell: too few examples", f"n = {len(d)}"
    mean, half = d.mean(), z * d.std(ddof=1) / np.sqrt(len(d))
    if abs(mean) <= half:
        verdict = "no clear difference"
    elif abs(mean) < min_effect:
        verdict = f"real but small (< {min_effect:g})"
    else:
        verdict = "agrees" if mean > 0 else "opposite"
    return verdict, f"{mean:+.3f} ± {half:.3f} (n = {len(d)})"


def fig6_claims(records, model: str = "TPAP", baseline: str = "PGD-AT",
                min_interior_area: float = 0.05) -> pd.DataFrame:
    """Sec. 4.5's reading of Fig. 6, claim by claim: a per-example difference that tests it, and a verdict.

    A claim 'agrees' when the mean difference exceeds two standard errors (`paired_verdict`) and
    `min_effect` (0.05: five points of correlation or of mass share, 0.1 of enrichment), 'opposite'
    when it is that far below zero; a significant but smaller mean is 'real but small'.
    """
    df = pd.DataFrame(records)
    wide = df.pivot_table(index=["model", "index"], columns="input", values="corr_with_x_c")
    t = wide.loc[model]
    adv = df[(df.model == model) & (df.input == "x_pgd20")]
    correct = df[(df.model == model) & df.correct & df.input.isin(["x_c", "x_c.pur", "x_pgd20.pur"])]
    has_inner = correct[correct.interior_area >= min_interior_area]
    with np.errstate(invalid="ignore", divide="ignore"):
        outline_vs_inner = (has_inner.outline_mass / has_inner.outline_area
                            - has_inner.interior_mass / has_inner.interior_area)
    tests = [
        ("PGD-20 examples (b) have biased attention compared with (c), (d)", "Sec. 4.5",
         "correlation with the x_c map: mean of x_c.pur and x_pgd20.pur, minus x_pgd20",
         (t["x_c.pur"] + t["x_pgd20.pur"]) / 2 - t["x_pgd20"], 0.05),
        ("... although their attention can still focus on the target object", "Sec. 4.5",
         "x_pgd20: share of map mass on the object minus the object's share of the image",
         adv.object_mass - adv.object_area, 0.05),
        ("correctly classified examples: attention on the target object", "Sec. 4.5",
         "the same, on correctly classified x_c, x_c.pur, x_pgd20.pur", correct.object_mass - correct.object_area,
         0.05),
        ("... on its global outline rather than its interior", "Sec. 4.5",
         f"mass / area on the outline minus on the interior (objects with >= {100 * min_interior_area:.0f}% interior)",
         outline_vs_inner, 0.1),
        ("purification moves the PGD-20 map back towards the clean one", "added here",
         "correlation with the x_c map: x_pgd20.pur minus x_pgd20", t["x_pgd20.pur"] - t["x_pgd20"], 0.05),
    ]
    if baseline in wide.index.get_level_values(0):
        b = wide.loc[baseline]
        tests.append((f"{baseline}'s attention is less biased by PGD-20 than {model}'s", "added here",
                      f"correlation of x_pgd20's map with x_c's: {baseline} minus {model}",
                      b["x_pgd20"] - t["x_pgd20"], 0.05))
    rows = []
    for claim, source, measure, diff, min_effect in tests:
        verdict, value = paired_verdict(diff, min_effect)
        rows.append({"claim": claim, "source": source, "measured as": measure, "ours: mean ± 2 SE": value,
                     "smallest effect that counts": min_effect, "verdict": verdict})
    return pd.DataFrame(rows)


def shown_correct(res: dict, idx: Sequence[int], y_true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per shown example `idx` and column of FIG6_COLUMNS: is the prediction right (for `report.recovered_sentence`)."""
    idx = list(idx)
    y = y_true.cpu()[idx]
    return {c: res["y_pred"][c][idx] == y for c in FIG6_COLUMNS}


def plot_fig6(res: dict, idx: Sequence[int], class_names: Sequence[str], y_true: torch.Tensor, title: str = ""):
    """Fig. 6's grid for examples `idx`: columns x_c, x_pgd20, x_c.pur, x_pgd20.pur; prediction and confidence above."""
    idx = list(idx)
    images = {c: res["inputs"][c][idx] for c in FIG6_COLUMNS}
    cams = {c: res["cam"][c][idx] for c in FIG6_COLUMNS}
    titles = {}
    for c in FIG6_COLUMNS:
        for i, k in enumerate(idx):
            pred = class_names[int(res["y_pred"][c][k])]
            head = f"{c}\n" if i == 0 else ""
            titles[(c, i)] = f"{head}pred {pred} ({100 * float(res['conf'][c][k]):.0f}%)"
    rows = [f"true {class_names[int(y_true[k])]}" for k in idx]
    fig = plot_cam_grid(images, cams, titles, rows)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
