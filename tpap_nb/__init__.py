"""tpap_nb: Test-Time Adversarial Purification with FGSM (Tang & Zhang, CVPR 2024) as a teaching kit."""
__version__ = "0.1.0"

from .config import get_device, get_profile, set_seed  # noqa: E402
from .data import DatasetUnavailable, load_dataset  # noqa: E402
from .models import build_model  # noqa: E402
from .purify import TPAP, purify  # noqa: E402
from .train import CheckpointError, fit, get_or_train, load_model, robust_overfitting_test  # noqa: E402

__all__ = ["TPAP", "CheckpointError", "DatasetUnavailable", "build_model", "fit", "get_device", "get_or_train",
           "get_profile", "load_dataset", "load_model", "purify", "robust_overfitting_test", "set_seed"]
