"""Shipped checkpoints (tpap_nb.runs): exported, found by their settings, hash-checked, refused when changed."""
import json

import pytest
import torch

import tpap_nb as tp
from tpap_nb import runs as R


@pytest.fixture
def shipped(tmp_path, monkeypatch, digits):
    """A tiny smoke-profile network trained into the (isolated) runs folder and exported into a tmp folder."""
    monkeypatch.setattr(R, "SHIPPED", tmp_path / "shipped")
    cfg = tp.get_profile("smoke", epochs=2, width=4, n_train=128, n_eval=32)
    model, history, _ = tp.get_or_train(cfg, progress=False)
    rec = R.export(cfg, "fgsm", n_test=64)
    return cfg, model, history, rec


def test_export_writes_half_weights_and_a_record_with_its_numbers(shipped):
    cfg, model, history, rec = shipped
    pt = R.SHIPPED / f"{rec['name']}.pt"
    assert rec["sha256"] == R.sha256(pt) and rec["bytes"] == pt.stat().st_size
    state = torch.load(pt, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert "optimizer" not in state and len(state["history"]) == 2
    assert rec["settings"]["width"] == 4 and rec["seed"] == 0 and rec["n_test"] == 64
    assert 0 <= rec["test"]["test_clean"] <= 1 and "tpap_pgd20" in rec["test"]
    assert rec["name"] == R.shipped_name(tp.train.recipe_config(cfg, "fgsm"))


def test_get_or_train_uses_a_matching_shipped_network_instead_of_training(shipped):
    cfg, model, history, rec = shipped
    tp.train.checkpoint_path(tp.train.recipe_config(cfg, "fgsm")).unlink()  # a fresh clone: no checkpoint of yours
    got, hist, _ = tp.get_or_train(cfg, progress=False)
    assert got.provenance.startswith("shipped checkpoint") and "sha256 checked" in got.provenance
    for a, b in zip(got.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b.half().to(a.dtype)) if a.is_floating_point() else torch.equal(a, b)
    assert [h["epoch"] for h in hist] == [1, 2]
    again, _, _ = tp.get_or_train(cfg | {"retrain": True}, progress=False)  # asked to train: trains
    assert again.provenance.startswith("trained here")


def test_a_changed_file_or_record_is_refused(shipped):
    cfg, _, _, rec = shipped
    tp.train.checkpoint_path(tp.train.recipe_config(cfg, "fgsm")).unlink()
    pt = R.SHIPPED / f"{rec['name']}.pt"
    raw = bytearray(pt.read_bytes())
    raw[-100] ^= 0xFF
    pt.write_bytes(bytes(raw))
    with pytest.raises(tp.CheckpointError, match="sha256"):
        tp.get_or_train(cfg, progress=False)
    js = R.SHIPPED / f"{rec['name']}.json"
    bad = json.loads(js.read_text())
    bad["settings"]["lr"] = 123.0
    js.write_text(json.dumps(bad))
    with pytest.raises(tp.CheckpointError, match="lr"):
        tp.get_or_train(cfg, progress=False)


def test_other_settings_do_not_match_a_shipped_network(shipped):
    cfg, _, _, _ = shipped
    assert R.shipped_record(tp.train.recipe_config(cfg, "fgsm")) is not None
    assert R.shipped_record(tp.train.recipe_config(cfg | {"lr": 0.01}, "fgsm")) is None
    assert R.shipped_record(tp.train.recipe_config(cfg, "pgd")) is None
    fast = tp.train.recipe_config(cfg | {"precision": "bf16"}, "fgsm")  # another fast path: the same recipe
    assert R.shipped_name(fast) == R.shipped_name(tp.train.recipe_config(cfg, "fgsm"))
    assert tp.train.run_name(fast) != tp.train.run_name(tp.train.recipe_config(cfg, "fgsm"))


def test_verify_recomputes_the_recorded_clean_accuracy(shipped):
    rows = R.verify()
    assert len(rows) == 1 and rows[0]["sha256"] == "ok"
    assert rows[0]["clean_now"] == pytest.approx(rows[0]["recorded_clean"], abs=1e-6)


def test_a_trial_of_the_same_settings_exports_with_its_history_labelled(tmp_path, monkeypatch, digits):
    monkeypatch.setattr(R, "SHIPPED", tmp_path / "shipped")
    cfg = tp.get_profile("smoke", epochs=2, width=4, n_train=128, n_eval=32)
    trial = tmp_path / "trial.pt"
    tp.fit(tp.build_model("small_cnn", 10, 1, 4), digits.subset(n_train=128, seed=0), cfg, ckpt=trial, progress=False)
    rec = R.export(cfg, "fgsm", n_test=64, source=trial, eval_split="validation")
    assert rec["source"] == "trial.pt" and rec["history_measured_on"] == "validation"
    state = torch.load(R.SHIPPED / f"{rec['name']}.pt", weights_only=True)
    assert [h["eval_split"] for h in state["history"]] == ["validation", "validation"]
    assert state["meta"]["profile"] == "smoke" and state["meta"]["source"] == "trial.pt"
    with pytest.raises(tp.CheckpointError, match="'lr': \\(0.05, 0.01\\)"):
        R.export(cfg | {"lr": 0.01}, "fgsm", n_test=64, source=trial)


def test_the_repositorys_shipped_networks_load_and_match_their_profiles():
    """checkpoints/ (no data needed): the cifar profile's FGSM-RO and PGD-AT networks load with weights_only, their
    sha256 is the one recorded, their metadata is what their profile asks for today, and they stay small."""
    recs = {(r["profile"], r["recipe"]): r for r in R.shipped_records()}
    assert {("cifar", "fgsm"), ("cifar", "pgd")} <= set(recs)
    for (profile, recipe), rec in recs.items():
        cfg = tp.train.recipe_config(tp.get_profile(profile), recipe)
        assert R.shipped_record(cfg)["sha256"] == rec["sha256"]  # found by get_or_train under today's settings
        model, history = R.load_shipped(rec, torch.device("cpu"))  # hash checked, torch.load(weights_only=True)
        for key in ("dataset", "model", "width", "eps", "epochs", "batch_size", "lr", "seed", "n_val"):
            assert model.meta[key] == (list(cfg[key]) if isinstance(cfg[key], tuple) else cfg[key]), key
        assert len(history) == cfg["epochs"] and rec["n_test"] >= 1000
        assert (R.SHIPPED / f"{rec['name']}.pt").stat().st_size < 5e6
