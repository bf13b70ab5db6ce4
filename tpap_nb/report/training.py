"""Sentences for notebooks 00 and 01, written from the run's numbers (nothing in them is typed).

Each function takes what a cell already computed (accuracies as fractions, the history of
`fit`, the result of `robust_overfitting_test`) and returns Markdown that says what those numbers
show, so the prose beside a table can never contradict it.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..stats import compare
from .words import SAME, move, pct, points, radius

OTHER_MAX = 0.1  # Sec. 3.2: accuracy on other attacks below 10 % on the training set ("near zero" here)
# Train clean accuracy below this: the network has not learned the task yet (three times chance on ten classes): a
# PGD-20 collapse then is label leaking on a network that reads the perturbation, not the image, not Fig. 4's collapse.
LEARNED = 0.3


# ----------------------------------------------------------------------------- 00: the tour

def tour_verdict(acc: dict[str, dict[str, float]], n: int, attack: str = "PGD-20") -> str:
    """The tour's table in words: acc = {'clean': {'bare', 'tpap'}, attack: {'bare', 'tpap'}} as fractions of the
    same n images. A change is called a change only when the paired test decides it (`stats.compare` on the
    counts: the least favourable pairing, so a decided difference is decided whatever the per-image verdicts)."""
    for row in ("clean", attack):
        if row not in acc or not {"bare", "tpap"} <= set(acc[row]):
            raise ValueError(f"tour_verdict needs acc[{row!r}] with 'bare' and 'tpap' accuracies, got {acc}.")
    (cb, ct), (ab, at) = (acc["clean"]["bare"], acc["clean"]["tpap"]), (acc[attack]["bare"], acc[attack]["tpap"])
    clean, under = compare(100 * ct, 100 * cb, n), compare(100 * at, 100 * ab, n)
    text = [f"On {n} test images the bare model is right on {pct(cb)} of clean inputs and on {pct(ab)} of "
            f"{attack} inputs",
            f"Purification {move('clean accuracy', cb, ct, clean)} and {move(f'{attack} accuracy', ab, at, under)}"]
    if not (under["decided"] and at > ab):
        text.append(f"On this run purification does not undo the {attack} attack")
        return ". ".join(text) + "."
    above = compare(100 * at, 100 * cb, n)
    if above["decided"] and at > cb:
        text.append(f"TPAP under {attack} ends above the bare model's own clean accuracy ({pct(at)} against "
                    f"{pct(cb)}): the attack was crafted on the bare network, and from where it left the inputs one "
                    "purification step lands on the true label more often than from the clean images. That is an "
                    "attack that failed against this pipeline, not help; notebook 07 attacks the whole pipeline")
    elif cb - ab > SAME:
        text.append(f"It gives back {100 * (at - ab) / (cb - ab):.0f} % of the accuracy the attack took away")
    if not (clean["decided"] and ct < cb):
        text.append(f"It costs no clean accuracy that {n} images can detect")
    else:
        text.append(f"On this run it gains {'more' if at - ab > cb - ct else 'less'} under attack than it costs on "
                    f"clean inputs ({points(at - ab)} against {points(cb - ct)})")
    return ". ".join(text) + "."


def paper_claim(table6: dict) -> str:
    """The paper's headline (Tab. 6), from tpap_nb.paper.TABLE6 (percent)."""
    bare, pur = table6["without purification"], table6["with purification"]
    return (f"The paper reports, for ResNet-18 on CIFAR-10 (Tab. 6), PGD-20 accuracy going from {bare['pgd20']:g} % "
            f"without purification to {pur['pgd20']:g} % with it, while clean accuracy goes from "
            f"{bare['clean']:g} % to {pur['clean']:g} %.")


# ----------------------------------------------------------------------------- 01: training

def recipe_sentence(cfg: Mapping, name: str = "This run") -> str:
    """The training recipe of cfg in one sentence (optimiser, schedule, batch, radius, data, model)."""
    ms = ", ".join(str(m) for m in cfg["milestones"] if m < cfg["epochs"]) or "none within the run"
    return (f"{name}: {cfg['model']} on {cfg['dataset']}, SGD with momentum {cfg['momentum']:g} and weight decay "
            f"{cfg['weight_decay']:g}, learning rate {cfg['lr']:g} times 0.1 at epoch(s) {ms}, {cfg['epochs']} "
            f"epochs, batch {cfg['batch_size']}, FGSM radius eps = {radius(cfg['eps'])}.")


def _evaluated(history: list[dict]) -> list[dict]:
    rows = [h for h in history if "train_fgsm" in h]
    if not rows:
        raise ValueError("The history has no evaluated epoch; train with eval_every >= 1.")
    return rows


def curves_verdict(history: list[dict], attack: str = "PGD-20") -> str:
    """What the training curves (Fig. 1/4) show on this run: FGSM vs PGD-20 on train, bare vs TPAP on test."""
    rows = _evaluated(history)
    first, last = rows[0], rows[-1]
    low = min(rows, key=lambda h: h["train_pgd20"])
    span = (f"between epoch {first['epoch']} and epoch {last['epoch']}" if len(rows) > 1
            else f"at epoch {last['epoch']}, the only evaluated one")
    text = [f"On the training set, {span}, FGSM accuracy goes from {pct(first['train_fgsm'])} to "
            f"{pct(last['train_fgsm'])} and {attack} accuracy from {pct(first['train_pgd20'])} to "
            f"{pct(last['train_pgd20'])} (lowest {pct(low['train_pgd20'])}, epoch {low['epoch']})"
            if len(rows) > 1 else
            f"On the training set, {span}, FGSM accuracy is {pct(last['train_fgsm'])} and {attack} accuracy "
            f"{pct(last['train_pgd20'])}"]
    bar = f"Sec. 3.2's bar of {100 * OTHER_MAX:.0f} %"
    if last["train_pgd20"] >= OTHER_MAX:
        text.append(f"{attack} accuracy does not end below {bar}: on this run it did not collapse, so the network "
                    "has not (yet) overfitted FGSM in the paper's sense")
    elif last.get("train_clean", 1.0) < LEARNED:
        text.append(f"{attack} accuracy ends below {bar}, but clean accuracy on the training set is only "
                    f"{pct(last['train_clean'])}: the network has not learned the task yet, so this is not the "
                    "collapse of the paper's Fig. 4")
    else:
        text.append(f"{attack} accuracy ends below {bar} while clean accuracy on the training set is "
                    f"{pct(last['train_clean'])}: on this run it collapsed, as in the paper's Fig. 4")
    gap = last["train_fgsm"] - last["train_pgd20"]
    text.append(f"At the last epoch FGSM and {attack} accuracy on the training set are level"
                if abs(gap) < SAME else
                f"At the last epoch FGSM accuracy is {points(gap)} {'above' if gap > 0 else 'below'} "
                f"{attack} accuracy on the training set")
    if "tpap_pgd20" in last:
        under = move(f"{attack} accuracy", last["test_pgd20"], last["tpap_pgd20"])
        text.append(f"On the {last.get('eval_split', 'test')} images, purification {under} and "
                    f"{move('clean accuracy', last['test_clean'], last['tpap_clean'])}")
    return ". ".join(text) + "."


WHY = {
    "train FGSM": "FGSM examples still fool it on its own training images, so the overfitting to FGSM that TPAP "
                  "relies on has not set in",
    "train PGD-20": "PGD-20 has not collapsed on the training set: the network resists the multi-step attack "
                    "too, which is partial real robustness rather than overfitting to FGSM",
    "test clean": "it is often wrong on clean test images, and purification starts from its prediction",
    "test FGSM": "it is often wrong on FGSM test examples, the very images one purification step produces",
}


def overfitting_verdict(ro: dict) -> str:
    """The Sec. 3.2 test (train.robust_overfitting_test's result) in words: passed or not, with the numbers."""
    checks = ro["checks"]
    numbers = ", ".join(f"{name.split(' acc')[0]} {pct(v)}" for name, (v, _) in checks.items())
    if ro["robust_overfit"]:
        return (f"At epoch {ro['epoch']}, the last evaluated one, the network passes all {len(checks)} criteria "
                f"of Sec. 3.2 ({numbers}): it robustly overfits FGSM in the paper's sense, the network TPAP's "
                "purification is built on.")
    failed = [name for name, (_, ok) in checks.items() if not ok]
    reasons = [f'"{name}" fails ({pct(checks[name][0])}): {WHY.get(name.split(" acc")[0], "see Sec. 3.2")}'
               for name in failed]
    head = (f"At epoch {ro['epoch']}, the last evaluated one, the network fails {len(failed)} of the "
            f"{len(checks)} criteria of Sec. 3.2 ({numbers}). " + ". ".join(reasons) + ". ")
    if [name.split(" acc")[0] for name in failed] == ["test clean"]:
        return head + ("The overfitting itself is there (FGSM examples right, PGD-20 examples wrong on the training "
                       "set, FGSM test examples right); what is missing is clean accuracy. The paper asks only that "
                       "test clean accuracy be \"high\"; the 50 % line is this kit's reading of that word. TPAP "
                       "cannot be expected to score much above the network's clean accuracy on clean images, so "
                       "read its clean numbers against this one, not against the paper's 86 %.")
    return head + ("It is not an FGSM-RO network in the paper's sense, so TPAP's premise (one FGSM step lands where "
                   "the network is right) is not established here: read the TPAP numbers of this profile with that "
                   "in mind, or train longer or on another profile.")


def paper_pattern(ours: dict, paper: dict, name: str = "ours") -> str:
    """Beside Tab. 6: does our bare model show the paper's pattern (FGSM at least as high as clean, PGD-20
    near zero)? `ours` and `paper` are percentages keyed clean, fgsm, pgd20."""
    def shows(t):
        return t["fgsm"] >= t["clean"] - 100 * SAME, t["pgd20"] < 100 * OTHER_MAX

    text = [f"The paper's bare FGSM-RO ResNet-18 has test FGSM accuracy {paper['fgsm']:g} % against clean "
            f"{paper['clean']:g} %, and PGD-20 {paper['pgd20']:g} %",
            f"{name[0].upper() + name[1:]}: FGSM {ours['fgsm']:.1f} % against clean {ours['clean']:.1f} %, and "
            f"PGD-20 {ours['pgd20']:.1f} %"]
    fgsm_ok, pgd_ok = shows(ours)
    if fgsm_ok and pgd_ok:
        text.append("The pattern is the paper's: FGSM accuracy as high as clean accuracy (or higher) and PGD-20 "
                    f"below {100 * OTHER_MAX:.0f} %")
    else:
        miss = ([] if fgsm_ok else ["FGSM accuracy is below clean accuracy"]) + \
               ([] if pgd_ok else [f"PGD-20 accuracy is not below {100 * OTHER_MAX:.0f} %"])
        text.append("The pattern differs from the paper's: " + " and ".join(miss))
    return ". ".join(text) + "."
