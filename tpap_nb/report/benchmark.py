"""Notebook 03's result sentences: Tab. 2's differences from the paper, Tab. 6 and Tab. 7 in words, the
sanity checks, the minimal-norm attacks, and the Fig. 5 sweep (overfitting, label leaking).

They read the records of `evaluate.run_attacks` and `experiments.tables` / `experiments.fig5` (accuracies in %)
and the paper's tables (`tpap_nb.paper`, in %).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..attacks.registry import UNBOUNDED
from ..config import PAPER_EPS, PROFILES
from ..experiments.fig5 import label_leaking
from ..stats import compare, count_of, diff_text, pct_ci, unpack_verdicts, wilson
from ..train import robust_overfitting_test
from .words import radius, radius_in

# ----------------------------------------------------------------------------- numbers with their uncertainty


def verdicts_of(record: Mapping, side: str):
    """A record's per-image verdicts for `side` ("bare" or "tpap") when it carries them ('_tpap' tensors, as
    `experiments.precision` keeps them, or 'correct_tpap' strings of `stats.pack_verdicts`), else None."""
    v = record.get(f"_{side}")
    if v is None and record.get(f"correct_{side}"):
        v = unpack_verdicts(record[f"correct_{side}"])
    return v


def record_verdicts(records: list[dict]) -> dict:
    """{attack: (bare verdicts, TPAP verdicts)} of `run_attacks` records that keep them: `purification_sentence`'s
    `verdicts`, so Tab. 6's columns are compared image by image."""
    out = {}
    for r in records:
        vb, vt = verdicts_of(r, "bare"), verdicts_of(r, "tpap")
        if vb is not None and vt is not None:
            out[r["attack"]] = (vb, vt)
    return out


def acc_text(acc: float, n: int | None, short: bool = False) -> str:
    """An accuracy in % with its Wilson 95 % interval and n: '61.0 % (95 % CI 51.2-70.0, n = 100)'."""
    if not n:
        return f"{acc:.1f} % (n not given: no interval)"
    return pct_ci(count_of(acc, n), n, short=short)


def comparison(acc_a: float, acc_b: float, n: int | None, va=None, vb=None) -> dict | None:
    """`stats.compare` of two accuracies on the same n images: per image when both verdicts are given, else from
    the counts under the least favourable pairing; None when n is unknown (nothing can be decided)."""
    if va is not None and vb is not None:
        return compare(va, vb)
    return compare(acc_a, acc_b, n) if n else None


def within(r: dict | None) -> str:
    """'within the uncertainty (n = 100; +2.0 points (95 % CI ...))' for an undecided comparison."""
    if r is None:
        return "within the uncertainty (n not given)"
    how = "; images unpaired in the records: least favourable pairing" if "counts" in r.get("pairing", "") else ""
    return f"within the uncertainty (n = {r['n']:,}; {diff_text(r)}{how})"


def compare_words(r: dict | None, name_a: str, name_b: str) -> str:
    """'A above B by +5.0 points (95 % CI ...)' only when the paired test decides, else 'A and B within the
    uncertainty (n = ...)'."""
    if r is None or not r["decided"]:
        return f"{name_a} and {name_b} {within(r)}"
    return f"{name_a} {'above' if r['diff'] > 0 else 'below'} {name_b} by {diff_text(r)}"


def _n(records, n=None):
    return n or next((r.get("n") for r in records if r.get("n")), None)


def table2_differences(cfg: Mapping, records: list[dict], clean: dict, paper: dict, n: int,
                star_records: list[dict] | None = None) -> str:
    """The run-dependent bullets of "where our numbers differ from the paper's", rendered from this run.

    records / clean: TPAP's (the FGSM-RO model's) run_attacks records and robust_accuracy on clean
    inputs; paper: the paper's TPAP row of Tab. 2; star_records: TPAP*'s records when it ran.
    """
    eps, xi = cfg["attack_eps"], cfg["xi"]
    authors = PROFILES["paper"]  # the authors' setting (Sec. 4.1.2)
    by = {r["attack"]: r for r in records}
    r = radius_in(eps)
    setup = {"data": (cfg["dataset"], authors["dataset"]), "model": (cfg["model"], authors["model"]),
             "width": (cfg.get("width"), authors["width"]),
             "training epochs": (cfg.get("epochs"), authors["epochs"]),
             "training eps": (r(cfg.get("eps", eps)), radius(authors["eps"])),
             "attack eps": (r(eps), radius(PAPER_EPS))}
    if setup["data"][0] != setup["data"][1] or setup["model"][0] != setup["model"][1]:
        setup = {k: setup[k] for k in ("data", "model", "attack eps")}  # another network: its width says nothing
    differ = [f"{k} {ours} (paper: {theirs})" for k, (ours, theirs) in setup.items() if ours != theirs]
    lines = [f"- **Data and model.** This run: `{cfg['model']}` on `{cfg['dataset']}`, attack eps {r(eps)}, "
             f"n = {n} test images; the paper: ResNet-18 on CIFAR-10 at 8/255. "
             + ("The setups match, so the numbers can be compared directly (up to n and the seed)." if not differ
                else f"The setups differ in {'; '.join(differ)}: compare the pattern of each row, not the absolute "
                     "numbers.")]
    lines.append(f"- **xi.** The paper fixes xi = eps; this run purifies with xi = {r(xi)} ({xi / eps:.2g} eps)"
                 + ("." if abs(xi - eps) < 1e-9 else ": the README's section on the profile says how it was chosen."))
    clean_tpap = 100 * clean["tpap"]
    if "fgsm" in by and "fgsm" in paper:
        r = by["fgsm"]
        drop = comparison(clean_tpap, r["acc_tpap"], n)
        paper_drop = paper["clean"] - paper["fgsm"]
        text = (f"- **FGSM column.** From clean ({acc_text(clean_tpap, n)}) to FGSM ({acc_text(r['acc_tpap'], n)}), "
                f"TPAP loses {clean_tpap - r['acc_tpap']:.1f} points here")
        if drop is None:
            text += f" and {paper_drop:.1f} in the paper"
        else:
            text += (f" (95 % CI {drop['low']:.1f} to {drop['high']:.1f}) and {paper_drop:.1f} in the paper ("
                     + ("more here" if drop["low"] > paper_drop else "fewer here" if drop["high"] < paper_drop
                        else f"the paper's drop is within the uncertainty of ours, n = {n:,}") + ")")
        text += (": purifying a correctly classified FGSM input pushes it further along the attack (Sec. 4.3's "
                 "limitation, notebook 02).")
        star = {s["attack"]: s for s in star_records or []}
        if "fgsm" in star:
            t = star["fgsm"]
            c = comparison(t["acc_tpap"], r["acc_tpap"], n, verdicts_of(t, "tpap"), verdicts_of(r, "tpap"))
            decided = c is not None and c["decided"]
            verdict = ("the remedy works here" if decided and c["diff"] > 0 else "the remedy costs here" if decided
                       else f"no gain: {within(c)}")
            text += (f" TPAP*, the paper's remedy, scores {acc_text(t['acc_tpap'], n, short=True)} under FGSM against "
                     f"TPAP's {acc_text(r['acc_tpap'], n, short=True)} ({verdict}).")
        lines.append(text)
    if "pgd20" in by and "pgd20" in paper:
        r = by["pgd20"]
        text = (f"- **PGD-20 column.** The bare FGSM-RO model keeps {acc_text(r['acc_bare'], n)} and TPAP "
                f"{acc_text(r['acc_tpap'], n)} here; the paper reports {paper['pgd20']:.1f} % for TPAP")
        if n:
            low, high = (100 * v for v in wilson(count_of(r["acc_tpap"], n), n))
            text += (" (inside our interval)" if low <= paper["pgd20"] <= high else
                     f" ({'above' if paper['pgd20'] > high else 'below'} our interval)")
        lines.append(text + ".")
    return "\n".join(lines)


def purification_sentence(bare: dict, purified: dict, paper: dict | None = None, n: int | None = None,
                          verdicts: dict | None = None) -> str:
    """Tab. 6 in words: per column, accuracy without and with purification (each with n and its 95 % interval) and
    whether purification helps or costs beyond the uncertainty (a paired test on the same images), ours and the
    paper's.

    bare / purified: {column: accuracy %} without and with purification; n: the number of test images behind
    them; verdicts: {column: (bare verdicts, purified verdicts)} per image when known (else the counts decide
    under the least favourable pairing); paper: TABLE6-shaped {"without purification": {...}, "with
    purification": {...}}.
    """
    parts, gains, losses, undecided = [], [], [], []
    for col in purified:
        if col not in bare:
            continue
        change = purified[col] - bare[col]
        v_bare, v_pur = (verdicts or {}).get(col, (None, None))
        r = comparison(purified[col], bare[col], n, v_pur, v_bare)
        text = (f"{col} {acc_text(bare[col], n, short=True)} -> {acc_text(purified[col], n, short=True)} "
                f"({change:+.1f} points" + (f", 95 % CI {r['low']:.1f} to {r['high']:.1f}" if r else ""))
        if paper and col in paper.get("without purification", {}):
            p0, p1 = paper["without purification"][col], paper["with purification"][col]
            text += f"; paper {p0:.1f} -> {p1:.1f}, {p1 - p0:+.1f}"
        parts.append(text + ")")
        (undecided if r is None or not r["decided"] else gains if r["diff"] > 0 else losses).append(col)
    head = f"On n = {n:,} test images, without" if n else "Without"
    tail = (f" Beyond the uncertainty (paired test on the same images), purification helps on "
            f"{', '.join(gains) or 'no column'} and costs on {', '.join(losses) or 'no column'} here")
    tail += f"; on {', '.join(undecided)} the change is within the uncertainty (n = {n or 'not given'})." if undecided \
        else "."
    return head + " -> with purification: " + "; ".join(parts) + "." + tail


def table6_sentence(records: list[dict], paper: dict | None = None) -> str:
    """Tab. 6 in words from `tables.ablation` rows (accuracy %, n, and per-image verdicts under '_correct')."""
    acc = {(r["attack"], bool(r["purification"])): r for r in records}
    attacks = [a for a in dict.fromkeys(r["attack"] for r in records) if (a, False) in acc and (a, True) in acc]
    return purification_sentence({a: acc[a, False]["accuracy"] for a in attacks},
                                 {a: acc[a, True]["accuracy"] for a in attacks}, paper, _n(records),
                                 {a: (acc[a, False].get("_correct"), acc[a, True].get("_correct")) for a in attacks})


def table7_sentence(records: dict[str, list[dict]], paper: dict | None = None,
                    paper_names: dict[str, str] | None = None, attack: str = "pgd20") -> str:
    """Tab. 7 in words: the training attacks by TPAP's accuracy under `attack` (each with n and its 95 % interval),
    which pairs differ beyond the uncertainty (a paired test on the same images), ours beside the paper's order."""
    ours = {name: {r["attack"]: r for r in recs}[attack] for name, recs in records.items()
            if any(r["attack"] == attack for r in recs)}
    if not ours:
        return f"No record of `{attack}` in these Tab. 7 rows."
    ranked = sorted(ours, key=lambda n: -ours[n]["acc_tpap"])
    n = _n(ours.values())
    text = (f"With purification, accuracy under `{attack}` (n = {n or 'not given'}) is "
            + ", ".join(f"{k} {acc_text(ours[k]['acc_tpap'], n, short=True)} (bare {ours[k]['acc_bare']:.1f} %)"
                        for k in ranked))
    cmp = {(a, b): comparison(ours[a]["acc_tpap"], ours[b]["acc_tpap"], n, verdicts_of(ours[a], "tpap"),
                              verdicts_of(ours[b], "tpap")) for i, a in enumerate(ranked) for b in ranked[i + 1:]}
    above = [p for p, r in cmp.items() if r and r["decided"] and r["diff"] > 0]
    text += ("; beyond the uncertainty " + ", ".join(f"{a} above {b}" for a, b in above) if above else
             "; no two of them differ beyond the uncertainty")
    rest = [p for p in cmp if p not in above]
    if above and rest:
        text += f" (the other pairs are within the uncertainty, n = {n or 'not given'})"
    if paper:
        names = paper_names or {}
        ref = {k: names.get(k, k) for k in ranked if names.get(k, k) in paper and attack in paper[names.get(k, k)]}
        if ref:
            order = sorted(ref, key=lambda k: -paper[ref[k]][attack])
            # the orders disagree where ours decides a pair the other way round from the paper
            theirs = {k: paper[ref[k]][attack] for k in ref}
            swapped = [(a, b) for a, b in above if a in ref and b in ref and theirs[a] < theirs[b]]
            agree = [(a, b) for a, b in above if a in ref and b in ref and theirs[a] > theirs[b]]
            text += (f"; the paper's order is {', '.join(ref[k] for k in order)}"
                     + (f" (ours differs: {', '.join(f'{a} above {b}' for a, b in swapped)})" if swapped else
                        " (ours agrees where it decides" + (", up to pairs within the uncertainty)"
                                                             if len(agree) < len(ref) * (len(ref) - 1) // 2 else ")")
                        if agree else " (ours decides no pair, so it neither agrees nor differs)"))
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
        c = comparison(r["acc_tpap"], clean_tpap, r.get("n"))
        where = ("above" if c and c["decided"] and c["diff"] > 0 else "not above" if r["acc_tpap"] <= clean_tpap
                 else "within the uncertainty of")
        text = (f"under `{attack}` the bare model keeps {r['acc_bare']:.1f} %, the attack returned "
                f"{r.get('unchanged', float('nan')):.1f} % of the inputs unchanged, and TPAP scores "
                f"{acc_text(r['acc_tpap'], r.get('n'), short=True)} ({where} its clean "
                f"{clean_tpap:.1f} %")
        if r.get("acc_tpap_changed") is not None:
            text += f"; on the inputs the attack did move TPAP is right on {r['acc_tpap_changed']:.1f} %"
        text += ")"
        if twin in by:
            t = by[twin]
            text += (f"; its budgeted twin `{twin}` leaves the bare model {t['acc_bare']:.1f} % and TPAP "
                     f"{t['acc_tpap']:.1f} %")
            if t.get("unchanged", 0) >= 99.95:  # nothing found within the budget: a weak attack, not robustness
                stronger = [(o, by[o]) for o in UNBOUNDED.values() if o != twin and o in by
                            and budget_of(by[o]) == budget_of(t) and by[o]["acc_bare"] < t["acc_bare"]]
                text += (" (it returned every input unchanged: in its iterations it found no adversarial example "
                         f"within {budget_of(t)}, so this column measures a weak attack, not robustness"
                         + "".join(f"; `{o}` under the same budget leaves the bare model {r['acc_bare']:.1f} %"
                                   for o, r in stronger) + ")")
        parts.append(text)
    if not parts:
        return "No unbounded minimal-norm attack (cw2, ddn, sta) in these records."
    n = records[0]["n"]
    above = [r["attack"] for r in above_clean([by[a] for a in UNBOUNDED if a in by], clean_tpap)]
    head = (f"On these {n} test images, " + "; ".join(parts) + ". ")
    tail = ("An unbounded minimal-norm attack stops just across the decision boundary, and purification's "
            "step away from that barely-wrong label lands back on the true one, so "
            + (f"TPAP under {', '.join(above)} exceeds its own clean accuracy: that is where the optimiser "
               "stopped, not robustness. " if above else
               "TPAP's accuracy under it says where the optimiser stopped, not how robust TPAP is. ")
            + "The budgeted columns ask the robustness question: is there an adversarial input within the "
            "budget?")
    return head + tail


def budget_of(record: Mapping) -> str:
    """The budget an attack ran with, from its record's label: 'eps 8/255', 'L2 <= 0.5', 'flow <= 1 px', 'unbounded'."""
    label = record.get("label") or ""
    inner = label[label.find("(") + 1:label.rfind(")")] if "(" in label else ""
    kept = [p for p in inner.split(", ") if p.startswith(("eps ", "L2 <=", "flow <=", "unbounded"))]
    if not kept and "never searched" in inner:  # sta_advertorch: a fixed penalty constant, no budget on the flow
        return "no budget: a fixed penalty on the flow"
    return ", ".join(kept) or "budget not in the record's label"


def above_clean(records: list[dict], clean_tpap: float | None = None, clean_verdicts=None) -> list[dict]:
    """The attack columns where TPAP's accuracy exceeds TPAP's own clean accuracy beyond the uncertainty: per
    record the paired comparison (attack vs clean, same images) and the budget it ran with.

    clean_tpap: TPAP's clean accuracy in % (default: each record's 'acc_tpap_clean'); clean_verdicts: TPAP's
    per-image verdicts on the clean images, used with a record's own verdicts when both are known.
    """
    out = []
    for r in records:
        clean = clean_tpap if clean_tpap is not None else r.get("acc_tpap_clean")
        if clean is None or r["acc_tpap"] <= clean:
            continue
        cv = clean_verdicts if clean_verdicts is not None else (
            verdicts_of(r, "tpap_clean") if clean_tpap is None else None)  # run_attacks keeps them per record
        c = comparison(r["acc_tpap"], clean, r.get("n"), verdicts_of(r, "tpap"), cv)
        if c and c["decided"]:
            out.append({"attack": r["attack"], "acc_tpap": r["acc_tpap"], "clean": clean, "n": r["n"],
                        "budget": budget_of(r), "comparison": c})
    return out


def above_clean_sentence(records: list[dict], clean_tpap: float | None = None, clean_verdicts=None) -> str:
    """Flags every attack column where TPAP scores above its own clean accuracy beyond the uncertainty, and says why
    that is a failed attack, not help: the attack was crafted on the bare network and purification moves the example."""
    rows = above_clean(records, clean_tpap, clean_verdicts)
    if not rows:
        n = _n(records)
        return ("Under no attack does TPAP score above its own clean accuracy beyond the uncertainty "
                f"(paired test on the same {n or 'unknown number of'} images).")
    parts = [f"`{r['attack']}` ({r['budget']}): {acc_text(r['acc_tpap'], r['n'], short=True)} against clean "
             f"{acc_text(r['clean'], r['n'], short=True)}, {diff_text(r['comparison'])}" for r in rows]
    unbounded = [r["attack"] for r in rows if r["attack"] in UNBOUNDED]
    text = (f"**TPAP scores above its own clean accuracy** (n = {rows[0]['n']:,}) under " + "; ".join(parts) + ". "
            "An attack is meant to lower accuracy, and each of these examples "
            "was crafted on the bare network (the paper's protocol), and purification's step moves it again, so an "
            "accuracy above clean means the attack failed against this pipeline, not that it helps. The attack "
            "pushed the input to a place from which purification's step lands on the true label more often than "
            "it does from the clean image, within the budget named beside each column.")
    if unbounded:
        text += (f" {', '.join(unbounded)} {'is' if len(unbounded) == 1 else 'are'} unbounded minimal-norm: "
                 "they stop just across the bare network's boundary, where one purification step crosses back; "
                 "their budgeted twins ask the robustness question.")
    text += (" Whether an attack exists that succeeds against the whole pipeline is the question of the adaptive "
             "attacks (notebook 07), not of this column.")
    return text


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
