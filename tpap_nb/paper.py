"""The paper's reported numbers (Tang & Zhang, Robust Overfitting Does Matter: Test-Time Adversarial Purification
With FGSM, CVPR 2024), by table, to print beside ours.

All accuracies are in percent, ResNet-18 on CIFAR-10 unless stated; eps = xi = 8/255.
Table 1 (comparison with PGD-AT/TRADES/MART/SOAP across data sets) is missing from the text
this kit was given, so it is not here.
"""
from __future__ import annotations

# Tab. 2: TPAP (8/255 FGSM-RO) and TPAP* (8/255 + 16/255 FGSM) on CIFAR-10, ResNet-18. Each number is
# keyed by the registry name of the attack the authors actually ran: their "TI-DIM" column is plain
# DIM (`dim`, their attack/DIM/DIM.py), their "STA" column is advertorch 0.2.3's flawed
# SpatialTransformAttack (`sta_advertorch`, failed inputs returned as all-zero images). The kit's
# real `tidim` and own `sta` have no paper number. PAPER_COLUMN gives the paper's header of each key.
TABLE2 = {
    "TPAP": {"clean": 86.25, "fgsm": 61.41, "pgd20": 79.06, "pgd100": 80.5, "cw2": 61.37, "ddn": 64.5,
             "aa": 76.34, "sta_advertorch": 31.4, "fwa": 52.83, "dim": 75.21},
    "TPAP*": {"clean": 82.11, "fgsm": 73.23, "pgd20": 80.84, "pgd100": 79.69, "cw2": 80.65, "ddn": 79.04,
              "aa": 75.72, "sta_advertorch": 69.87, "fwa": 66.08, "dim": 80.85},
}
PAPER_COLUMN = {"clean": "clean", "fgsm": "FGSM", "pgd20": "PGD-20", "pgd100": "PGD-100", "cw2": "CW2",
                "ddn": "DDN", "aa": "AA", "sta_advertorch": "STA", "fwa": "FWA", "dim": "TI-DIM"}

TABLE3 = {  # Tab. 3: Caltech-101, ImageNet-pretrained ResNet-18 (*)
    "PGD-AT*": {"clean": 72.44, "fgsm": 65.55, "pgd20": 57.74},
    "TPAP*": {"clean": 70.2, "fgsm": 55.93, "pgd20": 59.16},
    "TPAP-TRADES*": {"clean": 76.11, "fgsm": 60.8, "pgd20": 70.91},
    "TPAP-MART*": {"clean": 69.27, "fgsm": 58.39, "pgd20": 60.63},
}

TABLE4 = {  # Tab. 4: comparison with pre-processing defences (clean, PGD, architecture)
    "Yang et al. 2019 (ME-Net, p 0.4->0.6)": {"clean": 84.0, "pgd": 68.2, "arch": "ResNet-18"},
    "Hill et al. 2021": {"clean": 84.12, "pgd": 78.91, "arch": "WRN-28-10"},
    "Wang et al. 2023": {"clean": 92.58, "pgd": 68.43, "arch": "WRN-28-10"},
    "TPAP": {"clean": 86.25, "pgd": 79.06, "arch": "ResNet-18"},
}

TABLE5 = {  # Tab. 5: cost, ResNet-18, CIFAR-10, batch 128, GeForce 2080 Ti
    "PGD-AT": {"train_s_per_epoch": 273.89, "test_s_per_epoch": 2.02, "train_tflops_per_epoch": 1831.5,
               "test_tflops_per_epoch": 11.1, "params_m": 11.17},
    "TPAP": {"train_s_per_epoch": 66.26, "test_s_per_epoch": 8.26, "train_tflops_per_epoch": 333.0,
             "test_tflops_per_epoch": 44.4, "params_m": 11.17},
}

TABLE6 = {  # Tab. 6: ablation of purification on the FGSM-RO ResNet-18
    "without purification": {"clean": 86.33, "fgsm": 94.41, "pgd20": 0.18},
    "with purification": {"clean": 86.25, "fgsm": 61.41, "pgd20": 79.06},
}

TABLE7 = {  # Tab. 7: training attack other than FGSM, then the same purification
    "CW2": {"clean": 68.19, "cw2": 84.7, "pgd20": 37.4, "fgsm": 39.95, "aa": 56.66},
    "PGD-10": {"clean": 86.17, "cw2": 75.62, "pgd20": 42.74, "fgsm": 44.5, "aa": 82.0},
    "FGSM": {"clean": 86.25, "cw2": 61.37, "pgd20": 79.06, "fgsm": 61.41, "aa": 76.34},
}
