"""tpap_nb: Test-Time Adversarial Purification with FGSM (Tang & Zhang, CVPR 2024) as a teaching kit.

The core (this package's top-level modules: config, data, models, train, checkpoints, purify, attacks, evaluate,
checks, plots, paper) is what every experiment uses; `tpap_nb.experiments` holds one module per
paper artefact and imports the core, never the other way round. Importing the package does not
import torchattacks: the attacks that need it import it when they run.
"""
from .checkpoints import CheckpointError, load_model
from .config import __version__, get_device, get_profile, set_seed
from .data import DatasetUnavailable, load_dataset
from .models import build_model, eval_mode
from .purify import TPAP, purify
from .runs import get_or_train
from .train import fit, robust_overfitting_test

__all__ = ["TPAP", "CheckpointError", "DatasetUnavailable", "__version__", "build_model", "eval_mode", "fit",
           "get_device", "get_or_train", "get_profile", "load_dataset", "load_model", "purify",
           "robust_overfitting_test", "set_seed"]
