"""The throughput bench runs on a tiny config and writes a consistent record (no wall-time asserts)."""
from __future__ import annotations

import json

import pytest
import torch

from tpap_nb.experiments import cost as B

TINY = ["--model", "small_cnn", "--width", "4", "--image-size", "8", "--channels", "1", "--batch-size", "4",
        "--repeats", "2", "--warmup", "1", "--min-time", "0", "--device", "cpu",
        "--threads", "1"]  # one thread: OpenMP barriers crawl on a busy 2-core machine


def _check_record(rec: dict, phases=B.PHASES):
    for key in ("model", "batch_size", "image_size", "device", "device_name", "dtype", "channels_last",
                "compile", "torch", "threads", "repeats", "results", "ratios", "targets"):
        assert key in rec, key
    assert rec["torch"] == torch.__version__ and rec["threads"] >= 1
    assert set(rec["results"]) == set(phases)
    for r in rec["results"].values():
        assert r["images_per_s"] > 0 and r["seconds_per_batch"] > 0 and r["spread"] >= 0
        assert len(r["seconds_per_batch_all"]) == rec["repeats"]
        assert r["images_per_s"] == pytest.approx(rec["batch_size"] / r["seconds_per_batch"])
    ips = {k: v["images_per_s"] for k, v in rec["results"].items()}
    if {"fgsm_train", "plain_train"} <= set(ips):
        assert rec["ratios"]["fgsm_over_plain_train"] == pytest.approx(ips["plain_train"] / ips["fgsm_train"])
    if {"tpap_infer", "plain_infer"} <= set(ips):
        assert rec["ratios"]["tpap_over_plain_infer"] == pytest.approx(ips["plain_infer"] / ips["tpap_infer"])
    for k, t in rec["targets"].items():
        assert t["ratio"] == rec["ratios"][k] and t["met"] == (t["ratio"] <= t["limit"])


def test_cli_writes_json_with_all_fields(tmp_path, capsys):
    path = tmp_path / "bench.json"
    threads_before = torch.get_num_threads()
    rec = B.main(TINY + ["--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["ratios"] == pytest.approx(rec["ratios"])
    _check_record(saved)
    assert saved["threads"] == 1 and torch.get_num_threads() == threads_before  # restored afterwards
    assert saved["device"] == "cpu" and saved["dtype"] == "float32" and saved["channels_last"] is False
    assert set(saved["targets"]) == {"fgsm_over_plain_train", "tpap_over_plain_infer", "tpap_over_plain_infer_folded"}
    out = capsys.readouterr().out
    assert "tpap_over_plain_infer" in out and "images/s" in out  # the table follows the JSON


def test_fast_path_options_run_on_cpu():
    rec = B.bench("small_cnn", batch_size=4, image_size=8, channels=3, width=4, device="cpu", dtype="bf16",
                  channels_last=True, repeats=1, min_time=0, threads=1,
                  phases=("fgsm_train", "plain_train", "tpap_infer"))
    _check_record(rec, ("fgsm_train", "plain_train", "tpap_infer"))
    assert rec["dtype"] == "bf16" and rec["channels_last"] is True
    assert "tpap_over_plain_infer" not in rec["ratios"] and "fgsm_over_plain_train" in rec["ratios"]




def test_bad_options_say_what_is_allowed():
    with pytest.raises(ValueError, match="phase"):
        B.bench(phases=("warp_speed",), device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        B.bench(dtype="fp8", device="cpu")


@pytest.mark.parametrize("name,channels,width,left", [("small_cnn", 1, 8, 0), ("resnet18", 3, 8, 0),
                                                      ("vgg16", 3, 8, 0), ("wrn34_10", 3, 1, 16)])
def test_fold_bn_computes_the_same_function(name, channels, width, left):
    from tpap_nb import build_model
    from tpap_nb.models import fold_bn
    from tpap_nb.purify import purify

    torch.manual_seed(0)
    model = build_model(name, 10, channels, width).train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(16, channels, 32, 32) * 0.5 + 0.2)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.2, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_bn(model)
    assert model.training  # the original keeps its mode and weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Only pre-activation BNs (WRN's, on a block's input) have no conv right before them.
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == left
    x = torch.rand(8, channels, 32, 32)
    model.eval()
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    same = (purify(folded, x, 0.03) == purify(model, x, 0.03)).float().mean()
    assert same > 0.99  # gradient signs agree up to float rounding of near-zero entries
