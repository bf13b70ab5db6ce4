"""Attacks: FGSM and PGD used by training live in base.py; the paper's registry in registry.py."""
from .base import fgsm, pgd
from .registry import ATTACKS, PAPER_ATTACKS, Attack, attack_info, attack_settings, build_attack

__all__ = [
    "fgsm", "pgd", "ATTACKS", "PAPER_ATTACKS", "Attack", "attack_info", "attack_settings", "build_attack",
]
