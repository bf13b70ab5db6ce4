"""Notebook 06's sentences: Tab. 5's hand count and the measured cost ratios in words."""
from __future__ import annotations

from collections.abc import Mapping

from ..config import PROFILES
from ..experiments.cost import cost_ratios, hand_count

PAPER_PGD_STEPS = PROFILES["paper"]["pgd_steps"]  # the paper's PGD-AT: PGD-10


def pgd_at_name(pgd_steps: int | None = None) -> str:
    """'PGD-3-AT': PGD-AT named by its training attack's steps (None: the paper's, PGD-10-AT)."""
    return f"PGD-{int(PAPER_PGD_STEPS if pgd_steps is None else pgd_steps)}-AT"


def pgd_at_label(pgd_steps: int) -> str:
    """Which PGD-AT a comparison runs: 'PGD-3-AT here, PGD-10-AT in the paper' (or 'PGD-10-AT, as in the paper')."""
    if int(pgd_steps) == PAPER_PGD_STEPS:
        return f"{pgd_at_name(pgd_steps)}, as in the paper"
    return f"{pgd_at_name(pgd_steps)} here, {pgd_at_name(PAPER_PGD_STEPS)} in the paper"


def hand_count_sentence(cfg: Mapping) -> str:
    """The hand count of `hand_count` for the profile's PGD-k, under both conventions, in words."""
    k, extra = cfg["pgd_steps"], bool(cfg.get("clean_bn_forward"))
    ours, ds = hand_count(k, "measured", extra), hand_count(k, "deepspeed", extra)
    plus = " + 1 (the discarded clean forward)" if extra else ""
    return (f"On this profile PGD-AT trains with PGD-{k}. Counting what runs, each attack step is a forward and a "
            f"backward to the input (2), the update a forward and a full backward (3){plus}: PGD-AT training is "
            f"{k} x 2 + 3{' + 1' if extra else ''}, {ours['PGD-AT training']} forwards per example, FGSM-AT "
            f"{ours['FGSM-AT training']}, and TPAP's test (forward, backward to the input, classifying forward) "
            f"{ours['TPAP test']}. Counting every backward as two forwards, as DeepSpeed's profiler does, the same "
            f"steps come to {ds['PGD-AT training']}, {ds['FGSM-AT training']} and {ds['TPAP test']}; the paper's "
            "Tab. 5 follows that convention for PGD-10 (the table below divides its FLOPs by one forward).")


def ratio_sentence(table: dict, paper: dict, pgd_steps: int) -> str:
    """The measured cost ratios in words: PGD-AT epochs in FGSM-AT epochs, TPAP's test in plain tests, paper beside."""
    r, p = cost_ratios(table), cost_ratios(paper)
    hand = hand_count(pgd_steps)
    return (f"**On this device** one PGD-AT epoch (PGD-{pgd_steps}) costs "
            f"{1 / r['train time, FGSM-AT / PGD-AT']:.1f} FGSM-AT epochs in time and "
            f"{1 / r['train FLOPs, FGSM-AT / PGD-AT']:.1f} in FLOPs (the hand count: "
            f"{hand['PGD-AT training'] / hand['FGSM-AT training']:.1f}; the paper's PGD-10: "
            f"{1 / p['train time, FGSM-AT / PGD-AT']:.1f} in time). TPAP's test costs "
            f"{r['test time, TPAP / plain']:.1f} plain tests in time and {r['test FLOPs, TPAP / plain']:.1f} in FLOPs "
            f"(paper: {p['test time, TPAP / plain']:.1f} in time). Time ratios drift from FLOP ratios where a pass is "
            "too small to keep the device busy: fixed per-call overheads then weigh as much as arithmetic.")
