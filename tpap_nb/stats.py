"""Numbers with their uncertainty: a Wilson interval for one accuracy, a paired comparison of two accuracies
measured on the same images, and the words for both (issue 21).

The paired interval is Newcombe's hybrid score interval for a difference of paired proportions (Newcombe 1998,
"Improved confidence intervals for the difference between binomial proportions based on paired data", method
10, its correlation phi shrunk by n/2 when positive, as in Fagerland, Lydersen & Laake 2017, Ch. 8): deterministic,
built from the two Wilson intervals and the correlation of the verdicts, and well behaved at 0 and n. The test is
exact McNemar: a two-sided binomial test on the discordant images. `decided` asks both to agree (the interval
excludes 0 and p < 1 - level): they differ at small discordant counts (3 of 3 images against 0 of 3: interval
21 to 100 points, p = 0.25) and at the margin (Fagerland's Cavo et al. table: -11.9 to -0.5 points, p = 0.052).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import binom, norm


def _z(level: float) -> float:
    """The two-sided normal quantile for a confidence level in (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"level = {level}: a confidence level is in (0, 1), e.g. 0.95.")
    return float(norm.ppf(0.5 + level / 2))


def _count(k, n) -> tuple[int, int]:
    """k and n as integers with 0 <= k <= n and n >= 1 (else a message saying which)."""
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k = {k}, n = {n}: need n >= 1 trials and 0 <= k <= n successes.")
    return k, n


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) for the proportion k/n, as fractions in [0, 1]."""
    k, n = _count(k, n)
    z, p = _z(level), k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def _verdicts(v) -> np.ndarray:
    """Per-image verdicts (bool list, numpy array or torch tensor) as a flat numpy bool array."""
    if torch.is_tensor(v):
        v = v.detach().cpu().numpy()
    return np.asarray(v).astype(bool).ravel()


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: binomial(b + c, 1/2) on the discordant counts b and c."""
    m = int(b) + int(c)
    return 1.0 if m == 0 else min(1.0, 2 * float(binom.cdf(min(b, c), m, 0.5)))


def paired(a, b, level: float = 0.95) -> dict:
    """Two accuracies on the same images: a - b in points, Newcombe's paired interval, McNemar's p, `decided`."""
    a, b = _verdicts(a), _verdicts(b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired needs one verdict per image for both, on the same images: got {a.size} and "
                         f"{b.size}.")
    n = a.size
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1, u1), (l2, u2) = wilson(both + only_a, n, level), wilson(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b  # phi as Newcombe defines it: shrunk by n/2 when positive
    phi = 0.0 if not margins else (max(0.0, cross - n / 2) if cross > 0 else cross) / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    low, high = 100 * max(-1.0, low), 100 * min(1.0, high)
    return {"n": n, "acc_a": 100 * p1, "acc_b": 100 * p2, "diff": 100 * d, "low": low, "high": high,
            "level": level, "a_only": only_a, "b_only": only_b, "p_mcnemar": mcnemar_p(only_a, only_b),
            "decided": (low > 0 or high < 0) and mcnemar_p(only_a, only_b) < 1 - level,
            "method": "Newcombe hybrid score (method 10) and exact McNemar"}


def _n(n: int) -> str:
    return f"{n:,}"


def pct_ci(k: int, n: int, level: float = 0.95, short: bool = False) -> str:
    """'42.6 % (95 % CI 39.6-45.7, n = 1,000)'; short: '42.6 % (39.6-45.7)'."""
    k, n = _count(k, n)
    low, high = wilson(k, n, level)
    if short:
        return f"{100 * k / n:.1f} % ({100 * low:.1f}-{100 * high:.1f})"
    return f"{100 * k / n:.1f} % ({100 * level:g} % CI {100 * low:.1f}-{100 * high:.1f}, n = {_n(n)})"


def diff_text(r: dict) -> str:
    """'+3.1 points (95 % CI -0.4 to 6.5, McNemar p = 0.08)' from a `paired` result."""
    return (f"{r['diff']:+.1f} points ({100 * r['level']:g} % CI {r['low']:.1f} to {r['high']:.1f}, "
            f"McNemar p = {r['p_mcnemar']:.2g})")


def compare_sentence(a, b, name_a: str, name_b: str, level: float = 0.95) -> str:
    """'A above B: ...' (or 'below') only when `paired` decides; else 'A and B do not differ at n = ...'."""
    r = paired(a, b, level)
    both = f"{r['acc_a']:.1f} % vs {r['acc_b']:.1f} %, {diff_text(r)}"
    if not r["decided"]:
        return f"{name_a} and {name_b} do not differ at n = {_n(r['n'])} ({both})"
    return f"{name_a} {'above' if r['diff'] > 0 else 'below'} {name_b} ({both}, n = {_n(r['n'])})"


def paired_counts(k_a: int, k_b: int, n: int, level: float = 0.95) -> dict:
    """Two accuracies on the same n images known only by their counts: `paired` under the least favourable pairing.

    Without the per-image verdicts the discordant images are unknown; the pairing with the most of them (as many
    images right for one and wrong for the other as the counts allow) gives the widest Newcombe interval and the
    largest McNemar p, so a difference `decided` here is decided whatever the pairing was.
    """
    k_a, n = _count(k_a, n)
    k_b, _ = _count(k_b, n)
    both = max(0, k_a + k_b - n)
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:k_a] = True  # a right on the first k_a images, b on the last k_b: overlap only where the counts force it
    b[n - k_b:] = True
    assert int((a & b).sum()) == both
    return paired(a, b, level) | {"pairing": "least favourable (counts only)"}


def count_of(acc_pct: float, n: int) -> int:
    """The number of images behind an accuracy in % on n images (records store %, tables round it to 0.01)."""
    k = round(float(acc_pct) * int(n) / 100)
    if abs(100 * k / n - acc_pct) > min(0.0051, 100 / (2 * n)):
        raise ValueError(f"{acc_pct} % is not a count of {n} images: is n the number of images it was measured on?")
    return int(k)


def compare(a, b, n: int | None = None, level: float = 0.95) -> dict:
    """`paired` on per-image verdicts when both a and b are verdicts, else `paired_counts` on accuracies in % of n."""
    if n is None or not np.isscalar(a) or not np.isscalar(b):
        return paired(a, b, level) | {"pairing": "per image"}
    return paired_counts(count_of(a, n), count_of(b, n), n, level)


def pack_verdicts(v) -> str:
    """Per-image verdicts as a short JSON-safe string ('n:hex' of the packed bits), for a record."""
    v = _verdicts(v)
    return f"{v.size}:{np.packbits(v).tobytes().hex()}"


def unpack_verdicts(s: str) -> np.ndarray:
    """The inverse of `pack_verdicts`."""
    n, hexbits = s.split(":", 1)
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexbits), np.uint8))[:int(n)].astype(bool)
