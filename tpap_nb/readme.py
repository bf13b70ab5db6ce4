"""The README's results section, written from the figures' provenance JSON of the last runs.

    python -m tpap_nb.readme            (make readme)   rewrite README.md between the markers
    python -m tpap_nb.readme --check                   exit 1 when the README is stale

Every number in the section comes from figures/<profile>/*.json (written by `plots.save_figure` during
`make run PROFILE=<profile>`), from the seed records in docs/measurements/ or from the paper's tables
(`paper.py`), so the README cannot drift from the figures it shows; tests/test_readme.py checks that the
committed section is what this module writes. The digits demonstration (DEMO) is always shown, and a profile
of SHOWN_FIRST (CIFAR-10) once its figures exist. The section is ordered by what the runs show: first each profile
whose FGSM-AT robustly overfits (`overfits`, CIFAR-10 first) with its curves, then the adaptive-attack verdict, then
one sentence for each profile that did not overfit. The "what to run where" table between the runtime markers is
`landing.runtimes_table`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from . import landing
from .config import PROFILE_STATUS, PROFILES, REPO, tracked_figures
from .experiments.tsne import knn_verdict
from .paper import TABLE2, TABLE6, TABLE7
from .report.words import radius_in
from .runs import shipped_records
from .stats import wilson

DEMO = "quick"  # the fully offline digits run that `make run` makes by default (the one place naming it)
SHOWN_FIRST = {"cifar": "CIFAR-10"}  # profiles shown above the demo once figures/<profile>/ is complete
ACCOUNT = {"quick": "docs/results.md", "cifar": "docs/cifar-search.md"}  # each run's written account
MEASUREMENTS = REPO / "docs" / "measurements"
# Each shown profile's seed records (experiments.seeds): the spread of its setting over seeds, on the test images.
SEED_RECORDS = {"quick": "clean-bn-forward-quick.jsonl", "cifar": "cifar-seeds.jsonl"}
LABELLED = ("pgd20", "pgd100", "aa")
SHORT = ("clean", "fgsm", "pgd20", "pgd100", "aa")  # the README's Tab. 2 columns; docs/tables.md has them all
TABLES = REPO / "docs" / "tables.md"
REQUIRED = ("01_training_curves", "02_xi_sweep", "03_attack_heatmap", "05_tsne", "06_cost_ratios",
            "07_adaptive_attacks")  # the figures' JSON a profile's part is written from

START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = ("clean", "fgsm", "pgd20", "pgd100", "cw2", "cw2_l2", "ddn", "ddn_l2", "aa", "sta", "sta_advertorch",
           "sta_flow1", "fwa", "tidim", "dim")
# The paper's STA number sits under `sta_advertorch` (the flawed attack it ran), its TI-DIM under `dim`.
HEADS = ("clean", "FGSM", "PGD-20", "PGD-100", "CW2", "CW2 L2<=0.5", "DDN", "DDN L2<=0.5", "AA", "STA (ours)",
         "STA (advertorch, flawed)", "STA flow<=1px", "FWA", "TI-DIM (real)", "DIM (authors' TI-DIM)")


def _load(figures: Path, name: str) -> dict:
    path = figures / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the notebooks (make run PROFILE={figures.name}) "
                                f"before `make readme`.")
    return json.loads(path.read_text())


def _f(v, nd: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _ci(v, n) -> str:
    """'47.6 (44-51)': an accuracy in percent on n images with its 95 % Wilson interval."""
    if v is None or not n or (isinstance(v, float) and math.isnan(v)):
        return _f(v)
    low, high = (100 * b for b in wilson(round(v * n / 100), n))
    return f"{_f(v)} ({_bound(low)}-{_bound(high)})"


def _bound(b: float) -> str:
    """An interval bound in whole points, with one decimal below 1 (so 0.4 is not written as 0)."""
    return f"{b:.1f}" if 0 < b < 1 else f"{b:.0f}"


def _pci(v, n) -> str:
    """'47.6 % (44-51)': as `_ci`, with its unit, for sentences that stand alone."""
    ci = _ci(v, n)
    return ci.replace(" (", " % (", 1) if "(" in ci else f"{ci} %"


def _device(text: str) -> str:
    """A device as the JSON says it ('cpu (1 threads)'), in English and short ('bf16 autocast + channels_last' is
    'bf16': the memory format changes no number)."""
    return re.sub(r"\b1 threads\b", "1 thread", str(text)).replace(" autocast + channels_last", "")


def _r(v: float, settings: dict) -> str:
    """A radius in the profile's unit (`report.radius_in` of its eps): 8/255 on CIFAR-10, 0.3 on digits."""
    return radius_in(settings["eps"])(v)


def _sweep_words(s: dict, best_xi: float, at_eps: float, pgd: dict, clean: dict) -> str:
    """The xi sweep in one clause: its best xi, and the attack eps (the same point when the best is at eps)."""
    eps = _r(s.get("attack_eps") or at_eps, s)
    at = f"{_f(pgd[at_eps])} % (clean {_f(clean[at_eps])} %)"
    if best_xi == at_eps:
        return f"PGD-20 accuracy is highest at xi = the attack eps, {eps}: {at}."
    return (f"PGD-20 accuracy peaks at xi = {_r(best_xi, s)} ({_f(pgd[best_xi])} %, clean {_f(clean[best_xi])} %); "
            f"at xi = {eps} (the attack eps) it is {at}.")


def shipped_sentence(profile: str, folder: Path | None = None) -> str:
    """The profile's shipped FGSM-RO network on its 1,000 test images (checkpoints/<name>.json, measured when it
    was exported), bare and with TPAP, each with its 95 % interval; '' where the profile ships none."""
    rec = next((r for r in shipped_records(folder) if r.get("profile") == profile and r.get("recipe") == "fgsm"
                and r.get("test")), None)
    if rec is None:
        return ""
    t, n = rec["test"], rec["n_test"]
    return (f"**The shipped network, {n:,} test images** (`checkpoints/`): bare clean "
            f"{_ci(100 * t['test_clean'], n)}, FGSM {_ci(100 * t['test_fgsm'], n)}, PGD-20 "
            f"{_ci(100 * t['test_pgd20'], n)}; with TPAP clean {_ci(100 * t['tpap_clean'], n)}, PGD-20 "
            f"{_ci(100 * t['tpap_pgd20'], n)}.")


def overfits(numbers: dict) -> bool:
    """FGSM-AT robustly overfitted (01's last epoch, bare model): PGD-20 <= 10 % while FGSM >= clean - 10 points."""
    return numbers["test_pgd20"] <= 10 and numbers["test_fgsm"] >= numbers["test_clean"] - 10


def _half_width(n: int) -> float:
    """The widest 95 % Wilson half-width on n images (at 50 %), in points."""
    low, high = wilson(n // 2, n)
    return 100 * (high - low) / 2


def _row(label: str, values: dict, nd: int = 1, columns: tuple = COLUMNS) -> str:
    return f"| {label} | " + " | ".join(_f(values.get(c), nd) for c in columns) + " |"



# How notebook 03's heatmap names its rows (experiments.tables.recipe_label, then ", bare" or ", + TPAP"); the
# older "fgsm / bare" keys are read too.
ROW_PREFIX = {"fgsm": "FGSM-RO (", "fgsm_multi": "TPAP* network", "pgd": "PGD-AT (", "cw2": "CW2-AT ("}
ROW_SUFFIX = {"bare": ", bare", "TPAP": ", + TPAP"}


def _cell(column: dict, recipe: str, defence: str):
    """One heatmap cell (a recipe's accuracy, bare or with TPAP, under one attack); None when not run."""
    if f"{recipe} / {defence}" in column:
        return column[f"{recipe} / {defence}"]
    return next((v for k, v in column.items() if k.startswith(ROW_PREFIX.get(recipe, recipe))
                 and k.endswith(ROW_SUFFIX[defence])), None)


def _account(profile: str) -> str:
    return ACCOUNT.get(profile, ACCOUNT[DEMO])


def _labels(settings: dict) -> str:
    """What the iterative columns ran (steps x step, restarts / queries, radius), from the run's settings."""
    from .attacks.registry import attack_label, attack_settings
    from .evaluate import attack_overrides

    return "; ".join(attack_label(a, attack_settings(a, **attack_overrides(a, settings))) for a in LABELLED)


def seed_spread(settings: dict, measurements: Path | None = None) -> str:
    """One sentence: this setting's numbers over seeds on the test images, from the profile's seed records
    (SEED_RECORDS in docs/measurements/: same xi, training eps and BatchNorm forward); '' with fewer than two seeds."""
    folder = Path(measurements) if measurements is not None else MEASUREMENTS
    path = folder / SEED_RECORDS.get(settings.get("profile"), "")
    if not path.is_file():
        return ""
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if ("bare_pgd20" in r and r.get("split") == "test" and math.isclose(r.get("xi", -1), settings["xi"])
                and math.isclose(r.get("train_eps", settings["eps"]), settings["eps"])
                and bool(r.get("clean_bn_forward", PROFILES.get(r.get("profile"), {}).get("clean_bn_forward")))
                == bool(settings.get("clean_bn_forward"))):
            rows.append(r)
    if len({r["seed"] for r in rows}) < 2:
        return ""
    ns = sorted({r["n"] for r in rows})

    def span(key: str) -> str:
        vals = [r[key] for r in rows]
        return f"{_f(sum(vals) / len(vals))} ({_f(min(vals))}-{_f(max(vals))})"

    over = sum(r["bare_pgd20"] <= 10 and r["bare_fgsm"] >= r["bare_clean"] - 10 for r in rows if "bare_fgsm" in r)
    where = sorted({f"{r['threads']} thread{'' if r['threads'] == 1 else 's'}; " for r in rows if "threads" in r})
    rel = path.relative_to(folder.parent.parent).as_posix() if folder.parent.parent in path.parents else path.name
    return (f"seeds {', '.join(str(r['seed']) for r in sorted(rows, key=lambda r: r['seed']))} of this setting "
            f"({''.join(where)}`{rel}`; {' / '.join(f'{n:,}' for n in ns)} test images each, 95 % intervals "
            f"±{_half_width(ns[0]):.1f} points at most) gave, mean (range): bare clean {span('bare_clean')}, PGD-20 "
            f"{span('bare_pgd20')} %; TPAP clean {span('tpap_clean')}, PGD-20 {span('tpap_pgd20')} %"
            + (f"; {over} of {len(rows)} end robustly overfitted (PGD-20 <= 10 %, FGSM >= clean - 10)."
               if any("bare_fgsm" in r for r in rows) else "."))


def results_section(figures: Path | None = None, measurements: Path | None = None) -> str:
    """The Markdown between the README's result markers, ordered by what the runs show: each profile whose FGSM-AT
    robustly overfits (CIFAR-10 first; the first in full, the others in brief) with its curves, then the
    adaptive-attack verdict, then one sentence for each profile that did not overfit."""
    root = Path(figures) if figures is not None else tracked_figures()
    parts = _parts(root)
    over = [(p, t) for p, t in parts if overfits(_load(root / p, "01_training_curves")["numbers"])]
    rest = [(p, t) for p, t in parts if (p, t) not in over]
    blocks = [f"### `{p}` ({title}): FGSM-AT robustly overfits\n\n"
              + profile_section(root / p, measurements, brief=i > 0) for i, (p, title) in enumerate(over)]
    blocks.append("### Under adaptive attacks (beyond the paper)\n\n"
                  + "\n\n".join(adaptive_part(root / p, title, figure=i == 0)
                                for i, (p, title) in enumerate(over or parts)))
    if rest:
        blocks.append("### Where FGSM-AT did not overfit\n\n"
                      + "\n\n".join(not_overfitted(root / p, title) for p, title in rest))
    return "\n\n".join(blocks)


def adaptive_part(figures: Path, title: str, figure: bool = True) -> str:
    """One profile's adaptive-attack verdict (07) from its figure's JSON; with `figure`, the figure and each
    attack's accuracy."""
    adaptive, s = _load(figures, "07_adaptive_attacks"), _load(figures, "03_attack_heatmap")["settings"]
    a, n = adaptive["numbers"]["table"], s["n_adaptive"]
    ta, bare_a, pgd_at = a["TPAP"], a.get("bare", {}), a.get("PGD-AT", {})
    protocol = next((v for k, v in ta.items() if k.startswith("transfer:bare")), None)
    grads = [k for k in ("pgd-bpda", "pgd-smooth", "apgd-ce", "apgd-t", "autoattack", "square") if k in ta]
    text = (f"**`{figures.name}` ({title}; 07, {n} test images).** Under the paper's protocol TPAP keeps "
            f"{_pci(protocol, n)} (clean {_pci(ta.get('clean'), n)}); attacked as a whole pipeline its per-sample "
            f"worst case is {_pci(ta.get('worst-case'), n)}"
            + (" (" + ", ".join(f"{k} {_f(ta[k])}" for k in grads) + ")" if figure else "")
            + f"; bare model {_pci(bare_a.get('worst-case'), n)}, PGD-{s['pgd_steps']}-AT "
            f"{_pci(pgd_at.get('worst-case'), n)}.")
    return text + (f"\n\n![adaptive](figures/{figures.name}/07_adaptive_attacks.png)" if figure else "")


def not_overfitted(figures: Path, title: str) -> str:
    """One sentence: this profile's FGSM-AT did not robustly overfit, with the numbers that say so."""
    curves = _load(figures, "01_training_curves")
    c, s = curves["numbers"], curves["settings"]
    n, split = s["n_eval"], c.get("eval_split", "test")
    why = ([f"bare PGD-20 stays at {_pci(c['test_pgd20'], n)}, above 10 %"] if c["test_pgd20"] > 10 else []) + \
          ([f"FGSM {_pci(c['test_fgsm'], n)} is more than 10 points below clean {_pci(c['test_clean'], n)}"]
           if c["test_fgsm"] < c["test_clean"] - 10 else [f"FGSM is {_pci(c['test_fgsm'], n)}"])
    width = f" w{s['width']}" if s.get("width") else ""
    return (f"**`{figures.name}` ({title}, {s['model']}{width}, eps = {_r(s['eps'], s)}).** FGSM-AT did not "
            f"robustly overfit: at epoch {s['epochs']}, on {n} {split} images, {', and '.join(why)}; with TPAP, "
            f"PGD-20 is {_pci(c['tpap_pgd20'], n)} (figures: `figures/{figures.name}/`; Tab. 2: "
            "[docs/tables.md](docs/tables.md)).")


def profile_section(figures: Path, measurements: Path | None = None, brief: bool = False) -> str:
    """One profile's results from figures/<profile>/*.json; image links point at figures/<profile>/.

    brief=True (a second overfitting profile below the first): its key sentences (no seed spread) and curves.
    The adaptive attacks are `adaptive_part`'s."""
    img = f"figures/{figures.name}"
    curves, sweep, heat = _load(figures, "01_training_curves"), _load(figures, "02_xi_sweep"), \
        _load(figures, "03_attack_heatmap")
    tsne, cost = _load(figures, "05_tsne"), _load(figures, "06_cost_ratios")
    _load(figures, "07_adaptive_attacks")  # a profile's part needs all its figures (REQUIRED)
    s = heat["settings"]
    c = curves["numbers"]
    table = heat["numbers"]["table"]

    def col(recipe: str, defence: str) -> dict:
        return {a: _cell(table.get(a, {}), recipe, defence) for a in COLUMNS}

    bare, tpap = col("fgsm", "bare"), col("fgsm", "TPAP")
    t6 = TABLE6
    xi_rows = sweep["numbers"]["records"]
    pgd_by_xi = {r["xi"]: r["accuracy"] for r in xi_rows if r["attack"] == "pgd20"}
    clean_by_xi = {r["xi"]: r["accuracy"] for r in xi_rows if r["attack"] == "clean"}
    best_xi = max(pgd_by_xi, key=pgd_by_xi.get)
    eps = s["eps"]
    attack_eps = s.get("attack_eps") or eps
    at_eps = min(pgd_by_xi, key=lambda v: abs(v - attack_eps))
    pgd_at_name = f"PGD-{s['pgd_steps']}-AT"
    recs = {(r["row"], r["attack"]): r for r in tsne["numbers"]["records"]}
    attacked = [k for (row, k) in recs if row == "TPAP" and k != "clean" and ("PGD-AT", k) in recs]
    better = [k for k in attacked if knn_verdict(recs["TPAP", k], recs["PGD-AT", k]) == "better"]
    cn = cost["numbers"]
    spread = seed_spread(s, measurements)
    n_c, split = s["n_eval"], c.get("eval_split", "test")
    radii = (f"trained at eps = {_r(eps, s)}, attacked at {_r(attack_eps, s)}"
             if not math.isclose(attack_eps, eps) else f"eps = {_r(eps, s)}")
    width = f" w{s['width']}" if s.get("width") else ""
    lines = [
        f"From `{img}/*.json`: {s['dataset']}, {s['model']}{width}, {radii}, "
        f"xi = {_r(s['xi'], s)}, {_device(curves['device'])}; accuracies in % with 95 % "
        f"intervals; the run's account: [{_account(s['profile'])}]({_account(s['profile'])})."
        + (f" **`{s['profile']}`: {PROFILE_STATUS[s['profile']].split(':')[0]}.**" if s["profile"] in PROFILE_STATUS
           else ""),
        "",
        f"**Robust overfitting (01, Fig. 1/4).** Epoch {s['epochs']}, {n_c} {split} images: bare clean "
        f"{_ci(c['test_clean'], n_c)}, FGSM {_ci(c['test_fgsm'], n_c)}, PGD-20 {_ci(c['test_pgd20'], n_c)} (train "
        f"FGSM {_f(c['train_fgsm'])}, train PGD-20 {_f(c['train_pgd20'])}); with TPAP clean "
        f"{_ci(c['tpap_clean'], n_c)}, PGD-20 {_ci(c['tpap_pgd20'], n_c)}." + (f" **Spread:** {spread}" if spread
                                                                             else ""),
        "",
        f"![training curves]({img}/01_training_curves.png)",
        "",
        *([shipped, ""] if (shipped := shipped_sentence(s["profile"])) else []),
        f"**Tab. 6 (03, {s['n_attack']} test images, ±{_half_width(s['n_attack']):.1f} points at most).** "
        "Without / with purification: clean "
        f"{_f(bare['clean'])} / {_f(tpap['clean'])}, FGSM {_f(bare['fgsm'])} / {_f(tpap['fgsm'])}, PGD-20 "
        f"{_f(bare['pgd20'])} / {_f(tpap['pgd20'])} (paper: {t6['without purification']['clean']} / "
        f"{t6['with purification']['clean']}, {t6['without purification']['fgsm']} / "
        f"{t6['with purification']['fgsm']}, {t6['without purification']['pgd20']} / "
        f"{t6['with purification']['pgd20']}). The xi sweep (02): " + _sweep_words(s, best_xi, at_eps, pgd_by_xi,
                                                                          clean_by_xi),
        "",
        f"![xi sweep]({img}/02_xi_sweep.png)",
        "",
        f"**Tab. 2 (03, {s['n_attack']} test images, ±{_half_width(s['n_attack']):.1f} points at most; crafted on "
        "the bare model, then purified; 5 of 15 "
        "columns, the rest and Tab. 7: [docs/tables.md](docs/tables.md)).** As run: " + _labels(s) + ".",
        "",
        "| | " + " | ".join(HEADS[COLUMNS.index(k)] for k in SHORT) + " |",
        "|---|" + "---|" * len(SHORT),
        _row("paper TPAP", TABLE2["TPAP"], 2, SHORT),
        _row("ours TPAP", tpap, 1, SHORT),
        _row("ours bare FGSM-RO", bare, 1, SHORT),
        "",
        f"![heatmap]({img}/03_attack_heatmap.png)",
        "",
        f"**Fig. 7, Tab. 5 (05, 06).** t-SNE: TPAP's purified features separate the classes better than PGD-AT's "
        f"attacked ones (k-NN accuracy, 95 % intervals apart) under {len(better)} of {len(attacked)} attacks "
        f"({', '.join(better) or 'none'}). Cost on {_device(cost['device'])}: FGSM-AT training takes "
        f"{cn['ours: train time, FGSM-AT / PGD-AT']:.2f}x the time of "
        f"{pgd_at_name}, TPAP inference {cn['ours: test time, TPAP / plain']:.2f}x plain inference "
        f"({cn['ours: test FLOPs, TPAP / plain']:.1f}x the FLOPs).",
    ]
    if brief:
        keep = ("From ", "**Robust overfitting", "![training curves]")
        paragraphs = [p.split(" **Spread:**")[0] for p in "\n".join(lines).split("\n\n") if p.startswith(keep)]
        return "\n\n".join(paragraphs + [f"Its figures: `{img}/`; seeds: [{_account(s['profile'])}]"
                                          f"({_account(s['profile'])}); Tab. 2: [docs/tables.md](docs/tables.md)."])
    return "\n".join(lines)


def tables_part(figures: Path) -> str:
    """docs/tables.md's part for one profile: Tab. 2 with all its columns (TPAP*, the paper) and Tab. 7."""
    heat = _load(figures, "03_attack_heatmap")
    s, table = heat["settings"], heat["numbers"]["table"]

    def col(recipe: str, defence: str) -> dict:
        return {a: _cell(table.get(a, {}), recipe, defence) for a in COLUMNS}

    bare, tpap, star = col("fgsm", "bare"), col("fgsm", "TPAP"), col("fgsm_multi", "TPAP")
    pgd_at_name = f"PGD-{s['pgd_steps']}-AT"
    t7_recipes = (("CW2-AT", "cw2"), (pgd_at_name, "pgd"), ("FGSM-AT", "fgsm"))
    t7 = {name: col(r, "TPAP") for name, r in t7_recipes}
    t7_bare = {name: col(r, "bare") for name, r in t7_recipes}
    lines = [
        f"**Tab. 2 (03, {s['n_attack']} test images, attacks crafted on the bare model, then purified; "
        + (f"iterations x {s['attack_scale']:g}, a setting since removed" if s.get("attack_scale", 1) != 1
           else "every attack at its full definition")
        + "). The paper's STA is advertorch's flawed one, its TI-DIM plain DIM; CW2, DDN, STA are unbounded "
        "(not robustness, docs/fidelity.md).** As run: " + _labels(s) + ".",
        "",
        "| | " + " | ".join(HEADS) + " |",
        "|---|" + "---|" * len(COLUMNS),
        _row("paper TPAP", TABLE2["TPAP"], 2),
        _row("ours TPAP", tpap),
        _row("ours bare FGSM-RO", bare),
        _row("paper TPAP*", TABLE2["TPAP*"], 2),
        _row("ours TPAP*", star),
        "",
        "Tab. 7 (other training attacks, then purification), clean / PGD-20: "
        + ", ".join(f"{k} {_f(t7_bare[k]['clean'])} / {_f(t7_bare[k]['pgd20'])} bare, {_f(v['clean'])} / "
                    f"{_f(v['pgd20'])} with TPAP" for k, v in t7.items())
        + " (paper, with TPAP: " + ", ".join(f"{k} {v['clean']} / {v['pgd20']}" for k, v in TABLE7.items()) + ").",
    ]
    return "\n".join(lines)


def tables_section(figures: Path | None = None) -> str:
    """docs/tables.md between its markers: each shown profile's full Tab. 2 and Tab. 7."""
    root = Path(figures) if figures is not None else tracked_figures()
    return "\n\n".join(f"## `{p}` ({title})\n\n" + tables_part(root / p) for p, title in _parts(root))


def _parts(root: Path) -> list[tuple[str, str]]:
    """The profiles shown: a SHOWN_FIRST one once its run is complete (a run still going, or stopped half
    way, leaves the README as it was), then the demo."""
    complete = [(p, title) for p, title in SHOWN_FIRST.items()
                if all((root / p / f"{name}.json").exists() for name in REQUIRED)]
    return complete + [(DEMO, "digits, offline")]


def split(text: str, start: str = START, end: str = END) -> tuple[str, str, str]:
    """(before, section, after) of a README around a pair of markers (default: the results')."""
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"The README needs exactly one {start} and one {end} line.")
    before, rest = text.split(start)
    section, after = rest.split(end)
    return before, section.strip("\n"), after


def update(readme: Path | None = None, figures: Path | None = None, check: bool = False,
           measurements: Path | None = None, tables: Path | None = None) -> bool:
    """Rewrite the README's results section and its what-to-run-where table, and docs/tables.md's section (or with
    check=True only compare); True when all were up to date."""
    page = Path(readme) if readme is not None else REPO / "README.md"
    jobs = [(page, START, END, lambda: results_section(figures, measurements))]
    if landing.START in page.read_text():
        jobs.append((page, landing.START, landing.END, lambda: landing.runtimes_table(figures)))
    if not (readme is not None and tables is None):  # a README given alone (tests): its tables page is not touched
        jobs.append((Path(tables) if tables is not None else TABLES, START, END, lambda: tables_section(figures)))
    fresh = True
    for path, start, end, new in jobs:
        before, old, after = split(path.read_text(), start, end)
        text = new()
        if not check and text != old:
            path.write_text(f"{before}{start}\n{text}\n{end}{after}")
        fresh = fresh and text == old
    return fresh


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only say whether README.md is up to date")
    ap.add_argument("--figures", type=Path, default=None, help="folder of the profiles' figure folders "
                    "(default figures/, holding figures/<profile>/*.json)")
    a = ap.parse_args(argv)
    fresh = update(figures=a.figures, check=a.check)
    print("README results: " + ("up to date" if fresh else "stale" if a.check else "rewritten"))
    if a.check and not fresh:
        sys.exit(1)


if __name__ == "__main__":
    main()

