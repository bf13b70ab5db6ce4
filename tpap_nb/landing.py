"""The README's "what to run where" table (from figures/<profile>/runtimes.json) and the check that every accuracy
in a results sentence carries its 95 % interval or its n (`unqualified`). Used by tpap_nb.readme."""
from __future__ import annotations

import re
from pathlib import Path

from .config import PROFILES, tracked_figures
from .runner import load_runtimes, notebook_paths

START, END = "<!-- runtimes:start -->", "<!-- runtimes:end -->"
CPU = "a 2-core CPU"  # the machine every runtimes.json record so far was measured on
CLASS_PATH = ("00", "01", "02", "07")  # a 90-minute class: the idea, the training, the purifier, the adaptive check
CLASS_MINUTES = 90
# What each data set asks of the reader before a run (docs/data.md says how to get it).
DATA = {"digits": "digits (offline)", "cifar10": "CIFAR-10 (170 MB)", "cifar100": "CIFAR-100 (170 MB)"}


def _minutes(seconds: float) -> str:
    m = seconds / 60
    return f"{m:.1f}" if m < 10 else f"{m:.0f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def runtimes_table(figures: Path | None = None) -> str:
    """The Markdown between the README's runtime markers: per profile with records, its minutes per notebook and in
    all on the CPU, the GPU's (or 'not measured'), the data it needs and the 90-minute class path's minutes."""
    runtimes = load_runtimes(figures if figures is not None else tracked_figures())
    numbers = [p.name[:2] for p in notebook_paths()]
    path = " → ".join(CLASS_PATH)
    head = (f"| profile | data | {' | '.join(numbers)} | all | class | one GPU |\n"
            f"|---|---|{'---|' * len(numbers)}---|---|---|")
    rows, threads = [], set()
    for profile, section in runtimes.items():
        recs = {key.split("/")[-1][:2]: r for key, r in section.items() if key.startswith("notebooks/")}
        cpu = {k: r["seconds"] for k, r in recs.items() if r.get("device") == "cpu"}
        gpu = {k: r for k, r in recs.items() if r.get("device") not in (None, "cpu")}
        threads |= {r["threads"] for r in recs.values() if r.get("device") == "cpu" and r.get("threads")}
        cells = [_minutes(cpu[k]) if k in cpu else "-" for k in numbers]
        total = _minutes(sum(cpu.values())) + ("" if len(cpu) == len(numbers) else f" ({len(cpu)} run)")
        lesson = _minutes(sum(cpu[k] for k in CLASS_PATH)) if all(k in cpu for k in CLASS_PATH) else "-"
        if gpu:
            devices = sorted({r["device"] for r in gpu.values()})
            on_gpu = f"{_minutes(sum(r['seconds'] for r in gpu.values()))} ({len(gpu)} run, {', '.join(devices)})"
        else:
            on_gpu = "not measured"
        dataset = PROFILES.get(profile, {}).get("dataset", "?")
        rows.append(f"| `{profile}` | {DATA.get(dataset, dataset)} | {' | '.join(cells)} | {total} | {lesson} | "
                    f"{on_gpu} |")
    if not rows:
        return "No run times recorded yet: `make run PROFILE=...` records them in figures/<profile>/runtimes.json."
    where = f"{CPU} ({' or '.join(str(t) for t in sorted(threads))} torch threads)" if threads else CPU
    return (f"Minutes per notebook under `make run` on {where} (`figures/<profile>/runtimes.json`; data: "
            f"[docs/data.md](docs/data.md)); `cifar` from its shipped networks. "
            f"A {CLASS_MINUTES}-minute class: {path} (*class*).\n\n" + head + "\n" + "\n".join(rows))


# ---------------------------------------------------------------- qualified numbers
# A percentage: a number followed by %, or a decimal after the name of what was measured ("clean 39.6").
_PCT = re.compile(r"(?<![<>=±\d.])(?<![<>=±] )(\d{1,3}(?:\.\d+)?)(?=\s?%)(?!\s?% (?:interval|confidence))"
                  r"|(?:\b(?:clean|FGSM|PGD-\d+|AA|AutoAttack|keeps|is)\s)(\d{1,3}\.\d+)(?![\dx/])")
_INTERVAL = re.compile(r"\s?%?\s?\(\d+(?:\.\d+)?-\d+(?:\.\d+)?\)")
_THRESHOLD = re.compile(r"(?:[<>=±]|\b(?:above|below|over|under|within|at most|at least))\s?$")
_N = re.compile(r"\b\d[\d,]*\s(?:test |validation |held-out |training |train )?images\b|\bn = \d")


def unqualified(text: str) -> list[str]:
    """Each accuracy in `text`'s result paragraphs (tables and image lines aside) that has neither a 95 % interval
    '(a-b)' right after it nor a sample size ('500 test images', 'n = 500') in its paragraph."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [ln for ln in paragraph.splitlines() if not ln.lstrip().startswith(("|", "!["))]
        para = " ".join(lines)
        if _N.search(para):
            continue
        for m in _PCT.finditer(para):
            if _THRESHOLD.search(para, 0, m.start(m.lastindex)):
                continue  # a rule's threshold ("PGD-20 <= 10 %", "above 10 %"), not a measurement
            if not _INTERVAL.match(para, m.end(m.lastindex)):
                found.append(m.group(m.lastindex))
    return found
