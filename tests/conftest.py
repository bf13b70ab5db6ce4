"""Shared fixtures: a tiny FGSM-RO model on sklearn digits, trained once per session (seconds)."""
import pytest
import torch

import tpap_nb as tp


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Test tensors are tiny: one thread is fastest, and avoids OpenMP spinning on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path, monkeypatch):
    """No test writes into the repository's runs/, data/ or figures/ (digits come from scikit-learn, not data/)."""
    monkeypatch.setenv("TPAP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TPAP_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("TPAP_DATA", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _float32_one_thread(monkeypatch):
    """Exactness tests run in float32 on one thread: "auto" precision and threads resolve so (tpap_nb.runtime);
    the tests of the fast path ask for it explicitly."""
    monkeypatch.setenv("TPAP_PRECISION", "float32")
    monkeypatch.setenv("TPAP_THREADS", "1")


@pytest.fixture(scope="session")
def digits():
    return tp.load_dataset("digits")


@pytest.fixture(scope="session")
def ro_model(digits):
    """A small CNN trained with Algorithm 1 on digits (eps 0.3) for a few epochs."""
    cfg = tp.get_profile("smoke", epochs=8, width=16, milestones=(6,), eval_every=0)
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=16)
    tp.fit(model, digits, cfg, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def test_xy(digits):
    return digits.test_batch(128)


def fresh_cnn(seed=0, width=8):
    torch.manual_seed(seed)
    return tp.build_model("small_cnn", 10, 1, width=width).eval()
