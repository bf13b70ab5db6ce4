"""What each notebook teaches (issue 21): near its top "What to expect on this profile", generated from the
profile's recorded figures (figures/<profile>/NN_*.json), and at its end "Three takeaways": the ideas written by
hand, each number beside them generated from this run's records, with n and a 95 % Wilson interval.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..config import tracked_figures
from ..stats import compare, diff_text, pct_ci
from ..stats import paired as paired_test
from .words import radius

# The ideas, one list of three per notebook: written by hand, never a number (the numbers come from the run).
TAKEAWAYS: dict[str, tuple[str, str, str]] = {
    "00": ("An adversarial example is a change of at most eps per pixel that flips the classifier's answer; PGD's "
           "many small projected steps find one far more often than FGSM's single step.",
           "TPAP defends at test time by attacking its own input: one FGSM step of size xi away from the label the "
           "network predicts, then classify the result (Eq. 7).",
           "A defence is judged on two rows, never one: what it gives back under attack and what it costs on "
           "images nobody attacked."),
    "01": ("Algorithm 1 is FGSM adversarial training without a random start: the weights only ever see FGSM "
           "examples, one step of size alpha = eps.",
           "Trained so, the network can robustly overfit FGSM: right on FGSM examples, wrong on PGD ones. TPAP "
           "needs exactly this, so it must be tested (Sec. 3.2), not assumed.",
           "Training curves are read on held-out images too (test images, or a validation split held out of "
           "training): the overfitting TPAP relies on shows on the training images and on unseen ones alike."),
    "02": ("Purification is one signed-gradient step away from the predicted label; on an FGSM-RO network that "
           "step lands where the network is right, which undoes a PGD attack.",
           "xi trades robustness for clean accuracy. The paper's xi = eps is a choice, to be made on a validation "
           "split, never on the test images a result is reported on.",
           "FGSM itself is TPAP's weak spot (Sec. 4.3): purifying an FGSM example the network already gets right "
           "pushes it out to eps + xi, a radius it never trained on."),
    "03": ("A defence is tested against many attacks, each labelled with what it ran (steps, step size, "
           "restarts, n), and with sanity checks that the attacks work.",
           "Purification is not a generic add-on: it helps the network that robustly overfits FGSM and can hurt "
           "networks trained otherwise (Tab. 7).",
           "An accuracy means little without the attack's settings and the number of images: a difference "
           "smaller than its interval is not a result."),
    "04": ("Grad-CAM shows which pixels carry the evidence for the predicted class, one map per input.",
           "Sec. 4.5's claim is that purification moves the attention of attacked inputs back towards the clean "
           "map; the numbers beside the pictures test it.",
           "A picture is not a measurement: a few drawn maps illustrate, averages over many images decide."),
    "05": ("Attacks move an input's features into the region of another class; t-SNE draws that drift.",
           "Purification should move features back into their class's region: the k-NN accuracy in feature space "
           "measures how far it does.",
           "t-SNE pictures change with the seed and the perplexity; judge separation by a score with an interval, "
           "and call one method better only when the intervals are apart."),
    "06": ("TPAP moves cost from training to testing: FGSM-AT trains with one attack step where PGD-AT takes k, "
           "and every test input pays one more forward and backward.",
           "Seconds belong to a machine; the ratios (FGSM-AT / PGD-AT training, TPAP / plain test) carry across "
           "machines.",
           "FLOP counts depend on a convention: DeepSpeed counts a backward as two forwards, PyTorch counts what "
           "runs."),
    "07": ("The paper's protocol attacks the bare network; a real attacker attacks the deployed pipeline "
           "F(x) = f(P(x)).",
           "The sign in P hides its gradient from autograd, not from an attacker: BPDA passes the gradient "
           "through the identity.",
           "The honest number is the worst case over attacks, image by image, and a gradient-free attack (Square) "
           "checks that the gradient attacks are not fooled by masking."),
}


def _pct(v: float, n: int | None, scale: float) -> str:
    """A fraction (scale 1) or a percentage (scale 100) with its Wilson interval when n is known."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measured"
    if n:
        return pct_ci(round(v / scale * n), n)
    return f"{100 * v / scale:.1f} %"


def on_this_run(numbers: Mapping[str, float | None], n: int | None = None, percent: bool = False,
                ratio: bool = False, paired=False) -> str:
    """'On this run: bare model on PGD-20 0.0 % (95 % CI 0.0-5.7, n = 64), TPAP 14.1 % (...).'

    numbers: {what: accuracy}, fractions (percent=False) or percentages; None: 'not measured'. n: the images each
    accuracy was measured on (its count of right answers is the accuracy x n, rounded). ratio: the numbers are
    ratios (a cost), written as they are, without an interval. paired: the two numbers were measured on the same
    n images, and the sentence says whether they differ: pass their per-image verdicts (first, second) for the
    paired test on them (`stats.paired`), or True when only the counts are known (`stats.compare`, least
    favourable pairing, which decides less often). Two numbers side by side are then never read as a difference
    the run cannot show."""
    if not numbers:
        return ""
    scale = 100.0 if percent else 1.0
    text = (lambda v: "not measured" if v is None else f"{v:.2f}") if ratio else (lambda v: _pct(v, n, scale))
    out = "On this run: " + "; ".join(f"{k} {text(v)}" for k, v in numbers.items())
    values = list(numbers.values())
    if paired is not False and n and not ratio and len(values) == 2 and None not in values:
        how = "paired test on the same images"
        try:
            if paired is True:
                c, how = compare(*(100 * v / scale for v in values[::-1]), n), "paired test on the counts alone"
            else:
                c = paired_test(paired[1], paired[0])  # the second minus the first
        except ValueError:  # not counts of n images: no test rather than a wrong one
            c = None
        if c is not None:
            out += (f" ({how}, second minus first: {diff_text(c)})" if c["decided"] else
                    f" ({how}: the two do not differ at n = {n:,})")
    return out + "."


def takeaways(notebook: str, evidence: Sequence[str | None] = ()) -> str:
    """The notebook's three takeaways as Markdown: the idea (by hand), then this run's evidence where given."""
    if notebook not in TAKEAWAYS:
        raise ValueError(f"No takeaways for notebook {notebook!r}; the kit has {sorted(TAKEAWAYS)}.")
    ev = list(evidence) + [None] * (3 - len(evidence))
    if len(ev) > 3:
        raise ValueError(f"takeaways takes at most one evidence sentence per takeaway (3), got {len(evidence)}.")
    ideas = TAKEAWAYS[notebook]
    return "\n".join(f"{i}. {idea}" + (f" {e}" if e else "") for i, (idea, e) in enumerate(zip(ideas, ev), 1))


# ----------------------------------------------------------------------------- what to expect

def _n(settings: Mapping, key: str) -> int | None:
    v = settings.get(key)
    return int(v) if isinstance(v, (int, float)) and v else None


def _exp_00(num, s):
    n = _n(s, "n_eval")
    rows = [k for k, v in num.items() if isinstance(v, dict) and "bare model (%)" in v]
    return "; ".join(f"{k}: bare model {_pct(num[k]['bare model (%)'], n, 100)}, TPAP "
                     f"{_pct(num[k]['TPAP (%)'], n, 100)}" for k in rows)


def _split(num) -> str:
    """The held-out images a training history was measured on: 'test', or 'validation' (held out of training)."""
    return "validation" if num.get("eval_split") in ("val", "validation") else "test"


def _exp_01(num, s):
    n = _n(s, "n_eval")
    return (f"at the last epoch, train FGSM {_pct(num['train_fgsm'], n, 100)} and train PGD-20 "
            f"{_pct(num['train_pgd20'], n, 100)}; on {_split(num)} images PGD-20 leaves the bare model "
            f"{_pct(num['test_pgd20'], n, 100)} and TPAP {_pct(num['tpap_pgd20'], n, 100)}")


def _exp_02(num, s):
    n, xi = _n(s, "n_eval"), s.get("xi")
    rec = num["records"]
    at = {r["attack"]: r["accuracy"] for r in rec if xi is not None and abs(r["xi"] - round(xi, 2)) < 1e-6}
    bare = {r["attack"]: r["accuracy"] for r in rec if r["xi"] == 0}
    text = (f"PGD-20 leaves the bare model {_pct(bare.get('pgd20'), n, 100)}"
            + (f" and TPAP at the profile's xi = {radius(xi)} {_pct(at['pgd20'], n, 100)}" if "pgd20" in at else ""))
    return text


def _exp_03(num, s):
    n, table = _n(s, "n_attack"), num["table"]
    row = next((r for r in table.get("pgd20", {}) if r.startswith("FGSM-RO") and r.endswith("+ TPAP")), None)
    if row is None:
        return ""
    bare = table["pgd20"][row.replace("+ TPAP", "bare")]
    return (f"{row.rsplit(', ', 1)[0]} under PGD-20: bare {_pct(bare, n, 100)}, "
            f"with TPAP {_pct(table['pgd20'][row], n, 100)}")


def _exp_04(num, s):
    acc = num["accuracy"]
    return (f"on the images Grad-CAM averages over, PGD-20 leaves {acc['x_pgd20']:.1f} % right and purification "
            f"{acc['x_pgd20.pur']:.1f} %")


def _exp_05(num, s):
    recs = {(r["row"], r["attack"]): r for r in num["records"]}
    parts = [f"{row}'s k-NN accuracy under PGD-20 {_pct(r['knn_acc'], r.get('n'), 1)}"
             for row in ("PGD-AT", "TPAP") if (r := recs.get((row, "pgd20")))]
    return "; ".join(parts)


def _exp_06(num, s):
    return "; ".join(f"{k.removeprefix('ours: ')} {v:.2f}" for k, v in num.items() if k.startswith("ours: "))


def _exp_07(num, s):
    n, tpap = _n(s, "n_adaptive"), num["table"].get("TPAP", {})
    parts = [f"{k} {_pct(tpap[k], n, 100)}" for k in ("transfer:bare FGSM-RO", "worst-case") if k in tpap]
    return "TPAP under " + ", ".join(parts) if parts else ""


EXPECT: dict[str, Callable] = {"00_tour": _exp_00, "01_training_curves": _exp_01, "02_xi_sweep": _exp_02,
                               "03_attack_heatmap": _exp_03, "04_gradcam_tpap": _exp_04, "05_tsne": _exp_05,
                               "06_cost_ratios": _exp_06, "07_adaptive_attacks": _exp_07}


# The settings a recorded run is compared on (`expectations(..., cfg=)`): a change in any makes other numbers.
COMPARED = ("dataset", "model", "width", "epochs", "eps", "attack_eps", "xi")


def _differs(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) > 1e-9 * max(1.0, abs(a))
    return a != b


def expectations(notebook: str, profile: str, folder: Path | None = None, cfg: Mapping | None = None) -> str:
    """'What to expect on this profile' from the profile's recorded figures of this notebook (figures/<profile>/
    NN_*.json; `folder` overrides): which run made them and its key numbers, or that no recorded run exists; with
    `cfg`, the settings (COMPARED) in which the recorded run differs from this one."""
    folder = tracked_figures(profile) if folder is None else Path(folder)
    head = f"**What to expect on `{profile}`.** "
    files = sorted(folder.glob(f"{notebook}_*.json")) if folder.is_dir() else []
    metas = []
    for f in files:
        try:
            metas.append((f, json.loads(f.read_text())))
        except (OSError, ValueError):
            continue
    own = [(f, m) for f, m in metas if m.get("profile") == profile]
    if not own:
        other = [f"{f.name} was made by `{m.get('profile')}`" for f, m in metas]
        return (head + f"No recorded run of notebook {notebook} exists for this profile"
                + (f" ({'; '.join(other)})" if other else f" (no {notebook}_*.json in figures/{profile}/)")
                + ": this run's numbers are the first.")
    first = own[0][1]
    device = str(first.get("device", "?")).replace("(1 threads)", "(1 thread)")  # older records wrote '1 threads'
    text = (head + f"The recorded run (commit {first.get('commit', '?')}, {device}, "
            f"{str(first.get('date', '?'))[:10]}) found: ")
    parts = []
    for f, m in own:
        fn = EXPECT.get(f.stem)
        if fn is None:
            continue
        try:
            phrase = fn(m.get("numbers", {}), m.get("settings", {}))
        except (KeyError, TypeError, ValueError, AttributeError):
            phrase = f"{f.name} holds numbers in a form this kit no longer reads"
        if phrase:
            parts.append(phrase)
    text += ("; ".join(parts) if parts else "figures without numbers to summarise") + "."
    if first.get("profile_status"):
        text += f" The profile is {first['profile_status']}."
    recorded = first.get("settings", {})
    changed = [k for k in COMPARED if cfg is not None and k in recorded and k in cfg and _differs(recorded[k], cfg[k])]
    if changed:
        text += (" That run used other settings than this one (" + ", ".join(
            f"{k} {radius(recorded[k]) if k in ('eps', 'attack_eps', 'xi') else recorded[k]}, now "
            f"{radius(cfg[k]) if k in ('eps', 'attack_eps', 'xi') else cfg[k]}" for k in changed)
            + "), so its numbers are a rough guide only.")
    return text + " Your numbers will differ with the machine, the seed and the code since; the sentences below " \
                  "are written from your run."
