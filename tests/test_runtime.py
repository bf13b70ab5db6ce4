"""tpap_nb.runtime: how "auto" is decided, that the settings are applied and given back, and bad values refused."""
import pytest
import torch

import tpap_nb as tp
from tpap_nb import runtime as R
from tpap_nb.evaluate import robust_predictions


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend to be a CPU with the given /proc/cpuinfo flags (None: flags unreadable); the cache is cleared."""
    def pretend(flags, timed_faster=False):
        R.native_bf16.cache_clear()
        monkeypatch.setattr(R, "_cpu_flags", lambda: flags)
        monkeypatch.setattr(R, "_bf16_faster_by_timing", lambda: timed_faster)
    yield pretend
    R.native_bf16.cache_clear()


def test_auto_is_bf16_and_channels_last_only_on_a_cpu_with_native_bf16(cpu_flags, monkeypatch):
    monkeypatch.delenv("TPAP_PRECISION")
    cpu_flags({"avx512f", "avx512_bf16"})
    rt = R.resolve("cpu")
    assert (rt.precision, rt.attack_precision, rt.channels_last) == ("bf16", "bf16", True)
    cpu_flags({"avx512f", "avx512bw"})  # AVX-512 without bf16 units: bf16 would be emulated, many times slower
    rt = R.resolve("cpu")
    assert (rt.precision, rt.channels_last) == ("float32", False)
    cpu_flags(None, timed_faster=True)  # no x86 flags (e.g. ARM): the timed probe decides
    assert R.resolve("cpu").precision == "bf16"
    cpu_flags(None, timed_faster=False)
    assert R.resolve("cpu").precision == "float32"


def test_explicit_settings_and_the_environment_win_over_auto(cpu_flags, monkeypatch):
    cpu_flags({"avx512_bf16"})
    assert R.resolve("cpu").precision == "float32"  # conftest: TPAP_PRECISION=float32
    monkeypatch.delenv("TPAP_PRECISION")
    rt = R.resolve("cpu", precision="float32")
    assert (rt.precision, rt.channels_last) == ("float32", False)
    rt = R.resolve("cpu", attack_precision="float32")
    assert (rt.precision, rt.attack_precision) == ("bf16", "float32")
    assert R.resolve("cpu", memory_format="contiguous").channels_last is False
    assert R.resolve("cpu", threads=3).threads == 3
    assert R.resolve("cpu").threads == 1  # conftest: TPAP_THREADS=1
    monkeypatch.delenv("TPAP_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert R.resolve("cpu").threads == R.available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert R.resolve("cpu").threads == 1


@pytest.mark.parametrize("kw,needle", [({"precision": "fp16"}, "precision='fp16'"),
                                       ({"attack_precision": "half"}, "attack_precision='half'"),
                                       ({"memory_format": "nhwc"}, "memory_format='nhwc'"),
                                       ({"threads": 0}, "threads=0"), ({"threads": "2"}, "threads='2'"),
                                       ({"compile": 3}, "compile=3")])
def test_bad_settings_name_the_value(kw, needle):
    with pytest.raises(ValueError) as err:
        R.resolve("cpu", **kw)
    assert needle in str(err.value)


def test_bad_environment_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("TPAP_THREADS", "two")
    with pytest.raises(ValueError, match=r"\$TPAP_THREADS='two'"):
        R.resolve("cpu")
    monkeypatch.setenv("TPAP_THREADS", "1")
    monkeypatch.setenv("TPAP_PRECISION", "fp8")
    with pytest.raises(ValueError, match=r"\$TPAP_PRECISION='fp8'"):
        R.resolve("cpu")


def test_profiles_refuse_bad_runtime_settings_up_front():
    with pytest.raises(ValueError, match="precision='fast'"):
        tp.get_profile("smoke", precision="fast")
    with pytest.raises(ValueError, match="threads=0"):
        tp.get_profile("smoke", threads=0)


def test_scope_sets_the_threads_and_gives_them_back():
    before = torch.get_num_threads()
    rt = R.resolve("cpu", threads=before + 1)
    with rt.scope():
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), rt.scope():
        raise RuntimeError("a failing run")
    assert torch.get_num_threads() == before


def test_autocast_runs_convolutions_in_bf16_and_float32_stays_float32():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(2, 3, 8, 8)
    bf16 = R.resolve("cpu", precision="bf16")
    with bf16.autocast():
        assert conv(bf16.inputs(x)).dtype == torch.bfloat16
    assert bf16.inputs(x).is_contiguous(memory_format=torch.channels_last)
    f32 = R.resolve("cpu", precision="float32")
    with f32.autocast(), f32.autocast(attack=True):
        assert conv(f32.inputs(x)).dtype == torch.float32
    assert f32.inputs(x).is_contiguous()
    mixed = R.resolve("cpu", precision="bf16", attack_precision="float32")
    with mixed.autocast(attack=True):
        assert conv(x).dtype == torch.float32
    assert "attacks float32" in mixed.describe() and "bf16 autocast + channels_last" in mixed.describe()


def test_evaluation_in_either_precision_gives_the_same_clean_predictions_almost_everywhere(ro_model, test_xy):
    x, y = test_xy
    f32 = robust_predictions(ro_model, x, y, xi=0.15, cfg={"attack_precision": "float32", "precision": "float32"})
    bf16 = robust_predictions(ro_model, x, y, xi=0.15, cfg={"attack_precision": "bf16", "precision": "bf16"})
    agree = (f32["bare"] == bf16["bare"]).float().mean()
    assert agree > 0.95  # bf16 rounds logits: a few near-ties may flip, not the classifier
