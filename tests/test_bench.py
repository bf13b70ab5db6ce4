"""The speed bench compares like with like, on a tiny shape (no wall-time asserts)."""
from __future__ import annotations

import json

import pytest
import torch

import tpap_nb as tp
from tpap_nb.experiments import bench as B
from tpap_nb.runtime import resolve
from tpap_nb.train import train_step

TINY = ["--model", "small_cnn", "--width", "4", "--batch-size", "8", "--repeats", "2", "--warmup", "1",
        "--min-time", "0", "--device", "cpu", "--threads", "1", "--profile", "smoke"]


def test_the_written_out_step_and_the_kits_step_train_the_same_weights():
    """The bench's reference loop is an independent FGSM-AT step: from one start, both reach the same weights."""
    rt = resolve("cpu", precision="float32")
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    weights = []
    for step in ("loop", "kit"):
        torch.manual_seed(0)
        model = tp.build_model("small_cnn", 10, 1, width=4)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            if step == "loop":
                B._loop_fgsm_step(model, opt, x, y, 0.1, rt)
            else:
                model.train()
                train_step(model, opt, x, y, {"recipe": "fgsm", "eps": 0.1}, rt)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in
                                                 tp.build_model("small_cnn", 10, 1, width=4).parameters()]))


def test_cli_times_every_phase_per_runtime_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    rec = B.main(TINY + ["--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["shape"] == {"model": "small_cnn", "width": 4, "batch_size": 8, "channels": 1, "image_size": 8,
                              "classes": 10}  # the smoke profile's data shape (digits), the width asked for
    assert set(saved["runs"]) <= {"float32", "fast"} and "float32" in saved["runs"]
    for run in saved["runs"].values():
        assert set(run["results"]) == set(B.PHASES) and run["runtime"]["threads"] == 1
        for r in run["results"].values():
            assert len(r["seconds_per_batch_all"]) == 2 and r["seconds_per_batch"] == min(r["seconds_per_batch_all"])
    assert saved["runs"]["float32"]["runtime"]["precision"] == "float32"
    assert set(saved["kit_over_loop"]) == {"kit_fgsm_train", "fit_fgsm"} and "fit_over_loop_target" in saved
    assert torch.get_num_threads() == threads  # restored afterwards
    out = capsys.readouterr().out
    assert "loop_fgsm_train" in out and "fit within 15 %" in out
    assert rec["profile"] == "smoke"


def test_ratios_and_targets_from_known_times(monkeypatch):
    """Times given by hand (no timing): each ratio, per-batch time and verdict below is worked out by hand."""
    monkeypatch.setenv("TPAP_PRECISION", "float32")  # one runtime: float32
    given = {"loop_fgsm_train": [0.3, 0.2], "kit_fgsm_train": [0.3, 0.4], "fit_fgsm": [1.76, 2.4],  # fit: 8 batches
             "plain_train": [0.1, 0.12], "plain_infer": [0.02, 0.01], "tpap_infer": [0.05, 0.06]}
    monkeypatch.setattr(B, "_phases", lambda shape, rt, phases, seed, cfg: {p: (lambda: None) for p in phases})
    monkeypatch.setattr(B, "time_round_robin", lambda steps, *a: ({k: given[k] for k in steps}, {k: 1 for k in steps}))
    rec = B.compare(B.Shape("small_cnn", 4, 8, 1, 8, 10), B.Timing(2, 0, 0.0), tuple(given), device="cpu", threads=1)
    fit = rec["runs"]["float32"]["results"]["fit_fgsm"]
    assert fit["seconds_per_batch_all"] == pytest.approx([0.22, 0.3])
    assert fit["seconds_per_batch"] == pytest.approx(0.22)  # the fastest repeat
    assert fit["images_per_s"] == pytest.approx(8 / 0.22)
    assert rec["kit_over_loop"] == pytest.approx({"kit_fgsm_train": 1.5, "fit_fgsm": 1.1})
    assert rec["fit_over_loop_target"]["met"]  # 1.1 <= 1.15
    ratios = {k: (v["ratio"], v["met"]) for k, v in rec["ratios"].items()}
    assert ratios == {"fgsm_over_plain_train": (pytest.approx(3.0), False),  # 0.3 / 0.1 > 2.3
                      "tpap_over_plain_infer": (pytest.approx(5.0), False)}  # 0.05 / 0.01 > 3.0


def test_the_fast_run_is_the_runtime_auto_picks(monkeypatch):
    monkeypatch.delenv("TPAP_PRECISION")
    rec = B.compare(B.Shape("small_cnn", 4, 4, 1, 8, 10), B.Timing(1, 0, 0.0), ("plain_infer",), device="cpu",
                    threads=1)
    auto = resolve("cpu")
    if auto.precision == "bf16":
        assert rec["runs"]["fast"]["runtime"]["precision"] == "bf16" and "plain_infer" in rec["fast_speedup"]
    else:
        assert set(rec["runs"]) == {"float32"}  # nothing faster to compare with on this CPU


def test_bad_phases_say_what_is_allowed():
    with pytest.raises(ValueError, match="warp_speed"):
        B.run_bench(B.Shape(), resolve("cpu"), phases=("warp_speed",))


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
