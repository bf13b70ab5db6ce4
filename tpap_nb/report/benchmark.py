"""Notebook 03's result sentences: Tab. 2's differences from the paper, Tab. 6 and Tab. 7 in words, the
sanity checks, the minimal-norm attacks, and the Fig. 5 sweep (overfitting, label leaking).

They read the records of `evaluate.run_attacks` and `experiments.tables` / `experiments.fig5` (accuracies in %)
and the paper's tables (`tpap_nb.paper`, in %).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..attacks.registry import UNBOUNDED
from ..config import PAPER_EPS
from ..experiments.fig5 import label_leaking
from ..train import robust_overfitting_test


def table2_differences(cfg: Mapping, records: list[dict], clean: dict, paper: dict, n: int,
                star_records: list[dict] | None = None) -> str:
    """The run-dependent bullets of "where our numbers differ from the paper's", rendered from this run.

    records / clean: TPAP's (the FGSM-RO model's) run_attacks records and robust_accuracy on clean
    inputs; paper: the paper's TPAP row of Tab. 2; star_records: TPAP*'s records when it ran.
    """
    eps, xi = cfg["attack_eps"], cfg["xi"]
    same_setup = cfg["dataset"] == "cifar10" and cfg["model"] == "resnet18" and abs(eps - PAPER_EPS) < 1e-9
    by = {r["attack"]: r for r in records}
    lines = [f"- **Data and model.** This run: `{cfg['model']}` on `{cfg['dataset']}`, attack eps {eps:.3g}, "
             f"n = {n} test images; the paper: ResNet-18 on CIFAR-10 at 8/255. "
             + ("The setups match, so the numbers can be compared directly (up to n and the seed)."
                if same_setup else "Absolute numbers are not comparable, only the pattern of each row.")]
    lines.append(f"- **xi.** The paper fixes xi = eps; this run purifies with xi = {xi:.3g} ({xi / eps:.2g} eps)"
                 + ("." if abs(xi - eps) < 1e-9 else ": the README's section on the profile says how it was chosen."))
    if "fgsm" in by and "fgsm" in paper:
        ours_drop = 100 * clean["tpap"] - by["fgsm"]["acc_tpap"]
        paper_drop = paper["clean"] - paper["fgsm"]
        text = (f"- **FGSM column.** From clean to FGSM, TPAP loses {ours_drop:.1f} points here and "
                f"{paper_drop:.1f} in the paper ({'more' if ours_drop > paper_drop else 'fewer'} here): "
                "purifying a correctly classified FGSM input pushes it further along the attack (Sec. 4.3's "
                "limitation, notebook 02).")
        star = {r["attack"]: r for r in star_records or []}
        if "fgsm" in star:
            better = star["fgsm"]["acc_tpap"] > by["fgsm"]["acc_tpap"]
            text += (f" TPAP*, the paper's remedy, scores {star['fgsm']['acc_tpap']:.1f} % under FGSM against "
                     f"TPAP's {by['fgsm']['acc_tpap']:.1f} % "
                     f"({'the remedy works here' if better else 'no gain here'}).")
        lines.append(text)
    if "pgd20" in by and "pgd20" in paper:
        r = by["pgd20"]
        lines.append(f"- **PGD-20 column.** The bare FGSM-RO model keeps {r['acc_bare']:.1f} % and TPAP "
                     f"{r['acc_tpap']:.1f} % here; the paper reports {paper['pgd20']:.1f} % for TPAP.")
    return "\n".join(lines)


def purification_sentence(bare: dict, purified: dict, paper: dict | None = None) -> str:
    """Tab. 6 in words: how many points purification adds (or costs) per column, ours and the paper's.

    bare / purified: {column: accuracy %} without and with purification; paper: TABLE6-shaped
    {"without purification": {...}, "with purification": {...}}.
    """
    parts = []
    for col in purified:
        if col not in bare:
            continue
        change = purified[col] - bare[col]
        text = f"{col} {bare[col]:.1f} -> {purified[col]:.1f} % ({change:+.1f} points"
        if paper and col in paper.get("without purification", {}):
            p0, p1 = paper["without purification"][col], paper["with purification"][col]
            text += f"; paper {p0:.1f} -> {p1:.1f}, {p1 - p0:+.1f}"
        parts.append(text + ")")
    gains = [c for c in purified if c in bare and purified[c] > bare[c]]
    losses = [c for c in purified if c in bare and purified[c] < bare[c]]
    tail = (f" Purification helps on {', '.join(gains) or 'no column'} and costs on {', '.join(losses) or 'no column'} "
            "here.")
    return "Without -> with purification: " + "; ".join(parts) + "." + tail


def table7_sentence(records: dict[str, list[dict]], paper: dict | None = None,
                    paper_names: dict[str, str] | None = None, attack: str = "pgd20") -> str:
    """Tab. 7 in words: the training attacks ranked by TPAP's accuracy under `attack`, ours beside the paper's order."""
    ours = {name: {r["attack"]: r for r in recs}[attack] for name, recs in records.items()
            if any(r["attack"] == attack for r in recs)}
    if not ours:
        return f"No record of `{attack}` in these Tab. 7 rows."
    ranked = sorted(ours, key=lambda n: -ours[n]["acc_tpap"])
    text = (f"With purification, accuracy under `{attack}` ranks the training attacks "
            + ", ".join(f"{n} ({ours[n]['acc_tpap']:.1f} %, bare {ours[n]['acc_bare']:.1f} %)" for n in ranked))
    if paper:
        names = paper_names or {}
        ref = {n: names.get(n, n) for n in ranked if names.get(n, n) in paper and attack in paper[names.get(n, n)]}
        if ref:
            order = sorted(ref, key=lambda n: -paper[ref[n]][attack])
            # the orders disagree where a pair is ranked strictly the other way round (a tie disagrees with nothing)
            swapped = [(a, b) for a in ref for b in ref
                       if ours[a]["acc_tpap"] > ours[b]["acc_tpap"] and paper[ref[a]][attack] < paper[ref[b]][attack]]
            text += (f"; the paper's order is {', '.join(ref[n] for n in order)}"
                     + (" (ours agrees" + (", up to ties)" if len({ours[n]['acc_tpap'] for n in ref}) < len(ref)
                                           else ")") if not swapped else
                        f" (ours differs: {', '.join(f'{a} above {b}' for a, b in swapped)})"))
    return text + "."


def checks_sentence(checks: list[dict]) -> str:
    """The sanity checks of `checks_table` in one sentence: all passed, or which failed."""
    failed = [c["check"] for c in checks if not c["passed"]]
    if not failed:
        return (f"All {len(checks)} sanity checks pass: the attacks get a gradient to follow, so the tables "
                "above are not an artefact of masked gradients.")
    return (f"{len(failed)} of {len(checks)} sanity checks fail ({'; '.join(failed)}): read the tables above "
            "with suspicion, an attack that does not reach 0 at a large eps may be blind to the model.")


def minimal_norm_sentence(records: list[dict], clean_tpap: float) -> str:
    """The paragraph of notebook 03 on minimal-norm attacks, with the numbers of `records` (one model).

    clean_tpap: TPAP's clean accuracy on the same inputs (%). An unbounded attack (CW2, DDN, STA)
    returns x where it fails and a point just across the boundary where it succeeds; purification
    steps away from the barely-wrong label and restores the true one, so TPAP's accuracy under it
    can exceed its clean accuracy: that measures where the optimiser stopped, not robustness.
    """
    by = {r["attack"]: r for r in records}
    parts = []
    for attack, twin in UNBOUNDED.items():
        if attack not in by:
            continue
        r = by[attack]
        text = (f"under `{attack}` the bare model keeps {r['acc_bare']:.1f} %, the attack returned "
                f"{r.get('unchanged', float('nan')):.1f} % of the inputs unchanged, and TPAP scores "
                f"{r['acc_tpap']:.1f} % ({'above' if r['acc_tpap'] > clean_tpap else 'not above'} its clean "
                f"{clean_tpap:.1f} %")
        if r.get("acc_tpap_changed") is not None:
            text += f"; on the inputs the attack did move TPAP is right on {r['acc_tpap_changed']:.1f} %"
        text += ")"
        if twin in by:
            t = by[twin]
            text += (f"; its budgeted twin `{twin}` leaves the bare model {t['acc_bare']:.1f} % and TPAP "
                     f"{t['acc_tpap']:.1f} %")
        parts.append(text)
    if not parts:
        return "No unbounded minimal-norm attack (cw2, ddn, sta) in these records."
    n = records[0]["n"]
    above = [a for a in UNBOUNDED if a in by and by[a]["acc_tpap"] > clean_tpap]
    head = (f"On these {n} test images, " + "; ".join(parts) + ". ")
    tail = ("An unbounded minimal-norm attack stops just across the decision boundary, and purification's "
            "step away from that barely-wrong label lands back on the true one, so "
            + (f"TPAP under {', '.join(above)} exceeds its own clean accuracy: that is where the optimiser "
               "stopped, not robustness. " if above else
               "TPAP's accuracy under it says where the optimiser stopped, not how robust TPAP is. ")
            + "The budgeted columns ask the robustness question: is there an adversarial input within the "
            "budget?")
    return head + tail


def _runs(records: list[dict]) -> dict:
    """{(panel, setting): [records by epoch]}, in the order the sweep ran them."""
    out: dict = {}
    for r in records:
        out.setdefault((r["panel"], r["setting"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["epoch"]) for k, v in out.items()}


def fig5_leaking_sentence(records: list[dict], margin: float = 1.0) -> str:
    """Where label leaking shows in the sweep, in words, with its numbers (or that it does not show)."""
    rows = label_leaking(records, margin)
    if not rows:
        return ("**Label leaking.** At no evaluated epoch of any run does FGSM accuracy exceed clean accuracy by "
                f"more than {margin:g} point{'s' if margin != 1 else ''}, on the train or the test split.")
    worst: dict = {}
    for r in rows:
        key = (r["setting"], r["split"])
        if key not in worst or r["fgsm"] - r["clean"] > worst[key]["fgsm"] - worst[key]["clean"]:
            worst[key] = r
    shown = sorted(worst.values(), key=lambda r: r["clean"] - r["fgsm"])
    cases = "; ".join(f"`{r['setting']}` ({r['split']}, epoch {r['epoch']}): FGSM {r['fgsm']:.1f} % against "
                      f"clean {r['clean']:.1f} %" for r in shown[:6])
    more = f" (and {len(shown) - 6} more)" if len(shown) > 6 else ""
    return (f"**Label leaking shows in {len({r['setting'] for r in rows})} of {len(_runs(records))} runs**: "
            f"{cases}{more}. FGSM builds its step from the true label, and a network trained on FGSM "
            "examples learns to read that step as a hint of the label (Kurakin et al. 2017, 'label leaking'): "
            "its accuracy on FGSM inputs then exceeds its accuracy on the clean ones, and is no sign of "
            "robustness. The lower the clean accuracy, the more of the FGSM score the hint carries; "
            "the PGD-20 columns, whose steps follow the network's own gradient, are the check.")


def fig5_overfitting_sentence(records: list[dict]) -> str:
    """Which runs end robustly overfitted (Sec. 3.2's test at their last evaluated epoch), per lever, with numbers."""
    runs = _runs(records)
    lines = []
    for panel in dict.fromkeys(p for p, _ in runs):
        parts = []
        for (p, setting), recs in runs.items():
            if p != panel:
                continue
            last = recs[-1]
            test = robust_overfitting_test([{k: v / 100 if isinstance(v, float) and k.startswith(("train_", "test_"))
                                             else v for k, v in last.items()}])
            parts.append(f"`{setting}` {'overfits' if test['robust_overfit'] else 'does not overfit'} "
                         f"(train FGSM {last['train_fgsm']:.0f} %, train PGD-20 {last['train_pgd20']:.0f} %, "
                         f"test PGD-20 bare {last['test_pgd20']:.0f} % / TPAP {last['tpap_pgd20']:.0f} %)")
        lines.append(f"- **{panel}**: " + "; ".join(parts) + ".")
    epochs = sorted({recs[-1]["epoch"] for recs in runs.values()})
    at = f"epoch {epochs[0]}" if len(epochs) == 1 else "the last evaluated epoch"
    return (f"At {at}, Sec. 3.2's test of robust overfitting ({', '.join(test['checks'])}) reads:\n"
            + "\n".join(lines))
