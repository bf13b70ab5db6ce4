"""Settings are checked when a profile is built; bad images and labels get the kit's own errors;
paths and figure provenance work outside the source tree and do not lie."""
import json
import subprocess

import pytest
import torch

import tpap_nb as tp
from tpap_nb import config, plots, settings
from tpap_nb.attacks import build_attack, fgsm
from tpap_nb.checks import check_images
from tpap_nb.evaluate import robust_accuracy


@pytest.mark.parametrize("override,match", [
    ({"eps": "0.3"}, "eps='0.3' is a str, expected float"),
    ({"epochs": 2.5}, "epochs=2.5 is a float, expected int"),
    ({"batch_size": True}, "batch_size=True is a bool"),
    ({"eps": 0.0}, "eps=0.0 must be > 0"),
    ({"eps": -0.1}, "eps=-0.1 must be > 0"),
    ({"epochs": 0}, "epochs=0 must be >= 1"),
    ({"xi": -0.1}, "allow_negative_xi=True"),
    ({"milestones": (0, 5)}, "milestones"),
    ({"n_train": "all"}, "n_train='all'"),
])
def test_bad_settings_get_one_clear_error(override, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        tp.get_profile("quick", **override)


def test_good_settings_pass_and_the_sign_flip_is_allowed_on_purpose():
    cfg = tp.get_profile("quick", eps=1, epochs=3, milestones=[2], n_train=100)
    assert cfg["eps"] == 1 and cfg["milestones"] == (2,)
    assert tp.get_profile("quick", xi=-0.21, allow_negative_xi=True)["xi"] == -0.21
    with pytest.raises(ValueError, match="profile 'smoke'"):
        tp.get_profile("smoke", lr=0)
    for name in config.PROFILES:  # every shipped profile passes its own checks
        settings.check_settings(tp.get_profile(name))


def test_nan_and_infinite_pixels_are_refused(ro_model):
    x = torch.rand(2, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        check_images(x)
    with pytest.raises(ValueError, match="NaN"):
        tp.purify(ro_model, x, 0.1)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="outside"):
        tp.purify(ro_model, x, 0.1)


def test_labels_outside_the_models_classes_get_the_kits_error(ro_model, test_xy):
    x, y = test_xy[0][:8], test_xy[1][:8].clone()
    y[3] = 11
    for call in (lambda: robust_accuracy(ro_model, x, y, xi=0.15),
                 lambda: robust_accuracy(ro_model, x, y),
                 lambda: fgsm(ro_model, x, y, 0.1),
                 lambda: build_attack("pgd20", ro_model, steps=2)(x, y)):
        with pytest.raises(ValueError, match="10 classes"):
            call()


def test_paths_fall_back_to_the_working_directory_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("TPAP_RUNS", raising=False)
    monkeypatch.delenv("TPAP_FIGURES", raising=False)
    monkeypatch.delenv("TPAP_DATA", raising=False)
    assert config.runs_root() == config.REPO / "runs"  # a source checkout: the repository
    monkeypatch.setattr(config, "REPO", tmp_path / "site-packages")  # an installed copy: no pyproject.toml
    monkeypatch.chdir(tmp_path)
    assert config.data_root() == tmp_path / "data" and config.figures_root() == tmp_path / "build" / "figures"
    monkeypatch.setenv("TPAP_RUNS", str(tmp_path / "elsewhere"))
    assert config.runs_root() == tmp_path / "elsewhere"


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_commit_is_read_once_and_figures_do_not_make_the_tree_dirty(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)
    (repo / "figures" / "a.json").write_text("{}")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    monkeypatch.setattr(plots, "REPO", repo)
    plots.git_commit.cache_clear()
    try:
        (repo / "figures" / "a.json").write_text('{"new": 1}')  # a run rewrote a tracked figure
        clean = plots.git_commit()
        assert clean and "+dirty" not in clean and clean != "unknown"
        (repo / "code.py").write_text("x = 2\n")
        assert plots.git_commit() == clean  # read once per process
        plots.git_commit.cache_clear()
        assert plots.git_commit() == clean + "+dirty"
    finally:
        plots.git_commit.cache_clear()


def test_save_figure_writes_png_and_provenance(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("TPAP_FIGURES", str(tmp_path / "figs"))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    cfg = tp.get_profile("smoke")
    saved = plots.save_figure(fig, "t", cfg, accuracy=91.5)
    plt.close(fig)
    meta = json.loads((tmp_path / "figs" / "t.json").read_text())
    assert (tmp_path / "figs" / "t.png").stat().st_size > 1000
    assert meta["numbers"] == {"accuracy": 91.5} and meta["profile"] == "smoke"
    assert meta["device"] == tp.runtime.runtime_for(cfg).describe()  # smoke: cpu, its threads and precision
    assert meta["device"].startswith("cpu, ") and meta["settings"]["eps"] == cfg["eps"]
    assert saved["figure"] == "t.png" and f"saved {tmp_path / 'figs'}/t.png" in repr(saved)
    fig, _ = plt.subplots()
    assert plots.save_figure(fig, "u", cfg, device=torch.device("cpu"))["device"] == meta["device"]
    plt.close(fig)
    assert "device_used" not in cfg


def test_a_profile_with_a_status_says_so_on_the_figure_and_in_its_json(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("TPAP_FIGURES", str(tmp_path))
    for profile, expected in (("gpu", config.PROFILE_STATUS["gpu"]), ("smoke", None)):
        fig, ax = plt.subplots()
        plots.save_figure(fig, profile, tp.get_profile(profile), device=torch.device("cpu"))
        texts = [t.get_text() for t in fig.texts]
        plt.close(fig)
        assert json.loads((tmp_path / f"{profile}.json").read_text())["profile_status"] == expected
        assert texts == ([f"profile gpu: {expected}"] if expected else [])
