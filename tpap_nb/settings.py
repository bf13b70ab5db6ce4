"""What a setting is: its type, its range, and `Config`, the one resolved, checked, immutable set of them.

`config.get_profile` resolves a profile (its table in `config.PROFILES`, the overrides, the tables keyed by
profile) into a `Config` once; everything below it reads that object and never looks at a profile's name
again. A Config reads like a dict (`cfg["eps"]`, `cfg.get("seed")`, `{**cfg}`, `dict(cfg)`), and
`cfg | {"eps": 0.1}` or `cfg.replace(eps=0.1)` returns a new Config with exactly those settings changed,
checked again. Adding a setting means: its entry in SETTING_TYPES (and BOUNDS / CHOICES if it has them), its
value in the profiles or in `config.get_profile`, and the code that uses it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from .runtime import MEMORY_FORMATS, PRECISIONS

# Words a setting may take.
RECIPES = ("plain", "fgsm", "fgsm_multi", "pgd", "trades", "mart", "fgsm_trades", "fgsm_mart", "cw2")
SCHEDULES = (None, "authors")
# lr_schedule: "multistep" (lr x0.1 at each milestone, the paper's MultiStepLR) or "onecycle" (per step:
# linear from 0 up to lr at 40 % of the steps, then linear down to 0; milestones unused).
LR_SCHEDULES = ("multistep", "onecycle")

# The type of every setting of a resolved config (float also takes an int); NULLABLE ones may be None.
# The groups (Mapping) are read-only tables resolved per profile: `table3` (Tab. 3's sizes, radius and
# optimiser), `bench` (the speed bench), `pgd_at_schedule` (epochs and milestones PGD-AT trains with).
SETTING_TYPES = {
    "profile": str, "status": str, "dataset": str, "model": str, "width": int, "recipe": str, "epochs": int,
    "batch_size": int, "lr": float, "milestones": (tuple, list), "momentum": float, "weight_decay": float,
    "eps": float, "alpha": float, "attack_eps": float, "xi": float, "baseline_eps": float,
    "n_train": int, "n_val": int, "n_eval": int, "eval_every": int, "device": str, "seed": int,
    "pgd_alpha": float, "pgd_steps": int, "beta": float, "n_attack": int, "n_adaptive": int, "adaptive_scale": float,
    "baselines": str, "sweep_epochs": int, "precision": str, "attack_precision": str,
    "memory_format": str, "threads": int, "compile": (bool, str), "clean_bn_forward": bool, "schedule": str,
    "benchmark_extras": bool, "lr_schedule": str, "retrain": bool,
    "pgd_at_schedule": Mapping, "table3": Mapping, "bench": Mapping, "toy": Mapping,
}
NULLABLE = {"status", "width", "alpha", "n_train", "threads", "attack_eps", "baseline_eps", "schedule",
            "pgd_at_schedule"}
# Settings that take one of a few words.
CHOICES = {"lr_schedule": LR_SCHEDULES, "precision": PRECISIONS, "attack_precision": PRECISIONS,
           "memory_format": MEMORY_FORMATS, "recipe": RECIPES, "schedule": SCHEDULES}
# Lower bounds: (minimum, strict). eps and lr must be > 0, counts >= 1, xi >= 0 (allow_negative_xi lifts it).
BOUNDS = {"eps": (0, True), "lr": (0, True), "epochs": (1, False), "batch_size": (1, False),
          "n_eval": (1, False), "n_attack": (1, False), "n_adaptive": (1, False), "sweep_epochs": (1, False),
          "pgd_steps": (1, False), "width": (1, False), "n_train": (1, False), "n_val": (0, False),
          "threads": (1, False),
          "eval_every": (0, False), "xi": (0, False), "attack_eps": (0, True), "pgd_alpha": (0, True),
          "alpha": (0, True), "baseline_eps": (0, True), "adaptive_scale": (0, True),
          "momentum": (0, False), "weight_decay": (0, False), "beta": (0, False)}
# Radii and step sizes in pixel units of [0, 1] images (eps = 8 is a forgotten /255).
RADII = ("eps", "xi", "attack_eps", "pgd_alpha", "alpha", "baseline_eps")
GROUPS = tuple(k for k, v in SETTING_TYPES.items() if v is Mapping)


def _type_ok(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def check_settings(cfg: Mapping, allow_negative_xi: bool = False) -> Mapping:
    """Refuse a wrong type or an out-of-range value with one error naming the setting and what it takes."""
    problems = []
    for key, value in cfg.items():
        kind = SETTING_TYPES.get(key)
        if kind is None or (value is None and key in NULLABLE):
            continue
        if not _type_ok(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            problems.append(f"{key}={value!r} is a {type(value).__name__}, expected {names}"
                            + (" (or None)" if key in NULLABLE else ""))
            continue
        if key in CHOICES and value not in CHOICES[key]:
            problems.append(f"{key}={value!r} must be one of {CHOICES[key]}")
            continue
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison below
            problems.append(f"{key}={value!r} must be a finite number")
            continue
        if key in RADII and abs(value) > 1:
            problems.append(f"{key}={value!r} must be in [0, 1]: radii are in pixel units "
                            f"(did you mean {value:g}/255?)")
            continue
        bound = BOUNDS.get(key)
        if bound is None or (key == "xi" and allow_negative_xi):
            continue
        low, strict = bound
        if value < low or (strict and value == low):
            problems.append(f"{key}={value!r} must be {'>' if strict else '>='} {low}")
    if not problems and isinstance(cfg.get("milestones"), (tuple, list)):
        if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in cfg["milestones"]):
            problems.append(f"milestones={cfg['milestones']!r} must be epochs (integers >= 1)")
    if problems:
        hint = (" (a negative xi steps towards the predicted label: pass allow_negative_xi=True to do that "
                "on purpose)" if any(p.startswith("xi=") and "must be >=" in p for p in problems) else "")
        raise ValueError(f"Bad setting(s) for profile {cfg.get('profile')!r}: " + "; ".join(problems) + hint + ".")
    return cfg


class Config(Mapping):
    """Every setting of one run, checked and read-only (`config.get_profile` makes them).

    Read it as a mapping; `cfg | {...}` / `cfg.replace(...)` give a new Config with those settings changed (and
    checked); nothing else is recomputed (the attack eps resolved by get_profile stays what it was).
    """

    __slots__ = ("_values", "_allow_negative_xi")

    def __init__(self, values: Mapping, allow_negative_xi: bool = False):
        values = dict(values)
        missing = [k for k in SETTING_TYPES if k not in values]
        unknown = sorted(k for k in values if k not in SETTING_TYPES)
        if missing or unknown:
            parts = ([f"unknown setting(s) {unknown}"] if unknown else []) + (
                [f"missing {missing}"] if missing else [])
            raise ValueError(f"Not a complete config: {'; '.join(parts)} (a config has {sorted(SETTING_TYPES)}). "
                             "Start from tpap_nb.get_profile(...) and change it with cfg | {...}.")
        if isinstance(values["milestones"], list):
            values["milestones"] = tuple(values["milestones"])
        for key in GROUPS:
            if isinstance(values[key], Mapping):
                values[key] = MappingProxyType(dict(values[key]))
        check_settings(values, allow_negative_xi)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_allow_negative_xi", allow_negative_xi)

    def __getitem__(self, key: str):
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __setattr__(self, name, value):
        raise AttributeError("A Config is read-only: cfg | {...} or cfg.replace(...) gives a changed copy.")

    def replace(self, **changes) -> Config:
        """A new Config with `changes` applied (None sets a nullable setting to None), checked."""
        return Config({**self._values, **changes}, self._allow_negative_xi)

    def __or__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.replace(**other)

    def __ror__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return Config({**other, **self._values}, self._allow_negative_xi)

    def plain(self) -> dict:
        """The settings as a plain dict (groups as dicts): for JSON and pickling."""
        return {k: dict(v) if k in GROUPS and v is not None else v for k, v in self._values.items()}

    def __reduce__(self):
        return Config, (self.plain(), self._allow_negative_xi)

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.plain().items()) + ")"


def as_config(cfg: Mapping) -> Config:
    """`cfg` when it is a Config, else the Config of a complete mapping such as {**cfg, "recipe": "pgd"} (an
    incomplete one is refused with the settings it lacks): what an entry point such as `train.fit` starts with."""
    return cfg if isinstance(cfg, Config) else Config(cfg)
