"""The throughput bench runs on a tiny config and writes a consistent record (no wall-time asserts)."""
from __future__ import annotations

import json

import pytest
import torch

from tpap_nb import bench as B

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
    assert set(saved["targets"]) == {"fgsm_over_plain_train", "tpap_over_plain_infer"}
    out = capsys.readouterr().out
    assert "tpap_over_plain_infer" in out and "images/s" in out  # the table follows the JSON


def test_fast_path_options_run_on_cpu():
    rec = B.bench("small_cnn", batch_size=4, image_size=8, channels=3, width=4, device="cpu", dtype="bf16",
                  channels_last=True, repeats=1, min_time=0, threads=1,
                  phases=("fgsm_train", "plain_train", "tpap_infer"))
    _check_record(rec, ("fgsm_train", "plain_train", "tpap_infer"))
    assert rec["dtype"] == "bf16" and rec["channels_last"] is True
    assert "tpap_over_plain_infer" not in rec["ratios"] and "fgsm_over_plain_train" in rec["ratios"]


def test_frozen_restores_requires_grad():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[1].weight.requires_grad_(False)
    with B.frozen(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]


def test_bad_options_say_what_is_allowed():
    with pytest.raises(ValueError, match="phase"):
        B.bench(phases=("warp_speed",), device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        B.bench(dtype="fp8", device="cpu")
