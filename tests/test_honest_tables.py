"""Honest tables (issue 12): every column is the attack it names, at the budget it names, seeded, with
the bare model's accuracy and the unchanged fraction beside TPAP's."""
import copy

import pytest
import torch

import tpap_nb as tp
from tpap_nb import evaluate, report
from tpap_nb.attacks import base, registry
from tpap_nb.attacks.registry import ATTACKS, TABLE2_ATTACKS, attack_info, attack_label, attack_settings, build_attack
from tpap_nb.config import PROFILES
from tpap_nb.experiments import tables
from tpap_nb.paper import TABLE2

PROFILE_NAMES = sorted(PROFILES)


@pytest.fixture
def step_spy(monkeypatch):
    """Records the step count of every PGD loop the kit runs."""
    seen = []
    real = base.pgd_loop

    def spy(model, x, x_adv, loss, eps, alpha, steps, observe=None):
        seen.append({"steps": steps, "alpha": alpha, "eps": eps})
        return real(model, x, x_adv, loss, eps, alpha, steps, observe)

    monkeypatch.setattr(base, "pgd_loop", spy)
    return seen


@pytest.fixture
def call_spy(monkeypatch):
    """Records (name, settings) of every registry attack that runs."""
    seen = []
    real = registry.Attack.__call__

    def spy(self, x, y):
        seen.append((self.name, dict(self.settings)))
        return real(self, x, y)

    monkeypatch.setattr(registry.Attack, "__call__", spy)
    return seen


# ---------------------------------------------------------------- 1. budgets: a name is its definition

@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_pgd20_runs_20_steps_and_aa_its_definition_whatever_the_profile(profile, step_spy, ro_model, test_xy):
    cfg = tp.get_profile(profile)
    assert "attack_scale" not in cfg and "eval_pgd_alpha" not in cfg
    x, y = test_xy[0][:8], test_xy[1][:8]
    for name, steps in (("pgd20", 20), ("pgd100", 100)):
        step_spy.clear()
        build_attack(name, ro_model, **evaluate.attack_overrides(name, cfg))(x, y)
        assert [s["steps"] for s in step_spy] == [steps]
    aa = attack_settings("aa", **evaluate.attack_overrides("aa", cfg))
    assert aa["steps"] == 100 and aa["n_queries"] == 5000
    eps = cfg.get("attack_eps") or cfg["eps"]
    pgd = attack_settings("pgd20", **evaluate.attack_overrides("pgd20", cfg))
    assert pgd["alpha"] == pytest.approx(0.003 * eps / (8 / 255)) and pgd["random_start"]


def test_scale_is_gone_and_a_custom_count_is_labelled():
    with pytest.raises(ValueError, match="always runs its definition"):
        attack_settings("pgd20", scale=0.5)
    assert "custom" not in attack_label("pgd20", attack_settings("pgd20"))
    assert "custom: steps 5, definition 20" in attack_label("pgd20", attack_settings("pgd20", steps=5))
    label = attack_label("pgd20", attack_settings("pgd20"), 1000)
    assert label == "pgd20 (20 x 0.003, random start, 1 restart, eps 8/255, n = 1000)"
    aa = attack_label("aa", attack_settings("aa"), 100)
    for part in ("100 iterations", "APGD-T 9 targets", "FAB-T", "Square 5000 queries", "1 restart", "n = 100"):
        assert part in aa


def test_per_epoch_pgd20_and_table2_pgd20_are_one_attack(call_spy, ro_model, digits):
    cfg = tp.get_profile("smoke", n_eval=16)
    evaluate.evaluate_epoch(ro_model, digits, cfg)
    epoch = [s for n, s in call_spy if n == "pgd20"]
    assert len(epoch) == 2  # train and test subsets
    call_spy.clear()
    x, y = digits.test_batch(16)
    evaluate.run_attacks(ro_model, x, y, ["pgd20"], cfg["xi"], cfg, progress=False)
    tab2 = [s for n, s in call_spy if n == "pgd20"]
    call_spy.clear()
    tables.ablation(ro_model, x, y, cfg)
    tab6 = [s for n, s in call_spy if n == "pgd20"]
    assert epoch[0] == epoch[1] == tab2[0] == tab6[0] == attack_settings("pgd20", **evaluate.attack_overrides("pgd20",
                                                                                                             cfg))
    assert evaluate.pgd20_step(cfg) == tab2[0]["alpha"]


# ---------------------------------------------------------------- 2. seeds: a rerun prints the same numbers

def test_a_rerun_gives_identical_records(ro_model, test_xy):
    model = copy.deepcopy(ro_model)
    model.checkpoint = "honest-rerun.pt"  # stored in the record store, like a trained checkpoint
    x, y = test_xy[0][:24], test_xy[1][:24]
    cfg = tp.get_profile("smoke", seed=3)
    names = ["pgd20", "dim", "tidim", "ddn"]
    overrides = {"ddn": dict(steps=5)}
    drop = ("seconds_attack", "seconds_purify")

    def run():
        torch.manual_seed(123 + len(evaluate.load_records()))  # a different global stream each time
        recs = evaluate.run_attacks(model, x, y, names, cfg["xi"], cfg, overrides=overrides, progress=False)
        return [{k: v for k, v in r.items() if k not in drop} for r in recs]

    first = run()
    evaluate.clear_cache()
    assert run() == first
    assert all('"seed": 3' in r["settings"] for r in first)


def test_every_random_attack_is_seeded_and_leaves_the_global_stream_alone(ro_model, test_xy):
    x, y = test_xy[0][:16], test_xy[1][:16]
    small = {"pgd20": {}, "dim": {}, "tidim": {}, "aa": dict(steps=2, n_queries=20)}
    for name, over in small.items():
        torch.manual_seed(0)
        a = build_attack(name, ro_model, seed=7, **over)(x, y)
        after = torch.rand(1)
        torch.manual_seed(1)
        b = build_attack(name, ro_model, seed=7, **over)(x, y)
        assert torch.equal(a, b), name
        torch.manual_seed(0)
        build_attack(name, ro_model, seed=7, **over)(x, y)
        assert torch.equal(torch.rand(1), after), name  # the caller's stream is untouched
    c = build_attack("pgd20", ro_model, seed=8)(x, y)
    assert not torch.equal(c, build_attack("pgd20", ro_model, seed=7)(x, y))


# ---------------------------------------------------------------- 3. minimal-norm: bare and unchanged

def test_records_carry_bare_accuracy_and_the_unchanged_fraction(ro_model, test_xy):
    x, y = test_xy[0][:32], test_xy[1][:32]
    cfg = tp.get_profile("smoke")
    recs = evaluate.run_attacks(ro_model, x, y, ["ddn", "ddn_l2", "sta_advertorch"], cfg["xi"], cfg,
                                overrides={"ddn": dict(steps=5), "ddn_l2": dict(steps=5),
                                           "sta_advertorch": dict(search_steps=1, max_iterations=2)},
                                progress=False)
    for r in recs:
        for key in ("acc_bare", "acc_tpap", "unchanged", "zero_images", "acc_tpap_clean", "label"):
            assert key in r, (r["attack"], key)
        assert 0 <= r["unchanged"] <= 100 and r["label"].startswith(r["attack"])
    by = {r["attack"]: r for r in recs}
    # a bare model right on an input means the minimal-norm attack failed there and returned x
    assert by["ddn"]["unchanged"] >= by["ddn"]["acc_bare"] - 1e-9
    # sta_advertorch returns a black image for every failure (the flaw it reproduces)
    assert by["sta_advertorch"]["zero_images"] >= by["sta_advertorch"]["acc_bare"] - 1e-9
    columns = ["ddn", "ddn_l2", "sta_advertorch"]
    df = tables.table2({"TPAP": recs}, {"TPAP": {"bare": 0.9, "tpap": 0.8}}, TABLE2, columns)
    assert {"ours: TPAP", "ours: TPAP bare", "ours: TPAP unchanged (%)", "paper: TPAP"} <= set(df.index)
    assert df.loc["paper: TPAP", "sta_advertorch"] == 31.4
    t7 = tables.bare_and_purified({"FGSM": recs}, {"FGSM": {"bare": 0.9, "tpap": 0.8}}, {}, ["clean", "ddn"])
    assert list(t7.index) == ["ours: FGSM bare", "ours: FGSM + TPAP"]
    text = report.minimal_norm_sentence(recs, clean_tpap=81.25)  # 26 of the 32 images
    assert f"{by['ddn']['acc_tpap']:.1f} %" in text and "ddn_l2" in text and "32 test images" in text


@pytest.mark.parametrize("name", ["cw2_l2", "ddn_l2", "sta_flow1"])
def test_a_budgeted_attack_never_exceeds_its_budget(name, ro_model, test_xy):
    x, y = test_xy[0][:32], test_xy[1][:32]
    over = {"cw2_l2": dict(steps=5, binary_search_steps=2, budget=0.5), "ddn_l2": dict(steps=10, budget=0.5),
            "sta_flow1": dict(steps=10)}[name]
    x_adv = build_attack(name, ro_model, **over)(x, y)
    if name == "sta_flow1":
        from tpap_nb.attacks.sta_flow1 import sta_flow1

        _, info = sta_flow1(ro_model, x, y, max_flow=1.0, steps=10, alpha=0.25, return_info=True)
        assert info["flow"].abs().max() <= 1.0
        assert torch.allclose(x_adv, sta_flow1(ro_model, x, y, max_flow=1.0, steps=10, alpha=0.25))
    else:
        assert ((x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all()


# ---------------------------------------------------------------- 4. the attacks the paper ran, by name

def test_the_papers_attacks_are_reachable_by_name_and_labelled(ro_model, test_xy):
    x, y = test_xy[0][:8], test_xy[1][:8]
    for name in ("dim", "sta_advertorch", "sta_flow1"):
        assert name in ATTACKS and name in TABLE2_ATTACKS
        x_adv = build_attack(name, ro_model, **({"search_steps": 1, "max_iterations": 2}
                                                 if name == "sta_advertorch" else {}))(x, y)
        assert x_adv.shape == x.shape
    assert "REPRODUCTION OF A FLAW" in attack_info("sta_advertorch")
    assert "ALL-ZERO" in attack_info("sta_advertorch")
    assert attack_label("sta_advertorch").startswith("sta_advertorch [reproduction of a flaw]")
    assert "calls TI-DIM" in attack_info("dim") and "no translation-invariant kernel" in attack_info("dim")
    assert "flow <= 1 px" in attack_label("sta_flow1")
    dim = attack_settings("dim")
    assert (dim["steps"], dim["alpha"], dim["decay"], dim["image_resize"], dim["random_start"]) == (20, 0.003, 1.0,
                                                                                                     33, False)
    # the paper's numbers sit beside the attack the authors ran
    assert TABLE2["TPAP"]["dim"] == 75.21 and TABLE2["TPAP"]["sta_advertorch"] == 31.4
    assert "tidim" not in TABLE2["TPAP"] and "sta" not in TABLE2["TPAP"]


# ---------------------------------------------------------------- 5. one AutoAttack

def test_autoattack_targets_9_classes_without_patching(monkeypatch, ro_model, test_xy):
    ta = pytest.importorskip("torchattacks")
    built = []

    class Spy:
        def __init__(self, cls):
            self.cls = cls

        def __call__(self, *args, **kwargs):
            atk = self.cls(*args, **kwargs)
            built.append((self.cls.__name__, kwargs, dict(vars(atk))))
            return atk

    for name in ("APGD", "APGDT", "FAB", "Square"):
        monkeypatch.setattr(ta, name, Spy(getattr(ta, name)))
    x, y = test_xy[0][:4], test_xy[1][:4]
    registry.autoattack(ro_model, x, y, 0.1, steps=1, n_queries=5, n_classes=100)
    by = {n: (kw, state) for n, kw, state in built}
    assert by["APGDT"][1]["n_target_classes"] == 9 and by["FAB"][1]["n_target_classes"] == 9
    assert by["APGD"][0]["steps"] == 1 and by["Square"][0]["n_queries"] == 5
    import inspect

    from tpap_nb.experiments import adaptive

    assert "n_target_classes" not in inspect.getsource(registry.autoattack).replace("n_target_classes = n_classes", "")
    src = inspect.getsource(adaptive)
    assert "torchattacks.AutoAttack" not in src and "autoattack(target, x, y, eps, seed=seed" in src


def test_minimal_norm_sentence_calls_a_budgeted_twin_that_moved_nothing_weak():
    def rec(attack, bare, tpap, unchanged, label):
        return {"attack": attack, "acc_bare": bare, "acc_tpap": tpap, "unchanged": unchanged, "n": 200,
                "label": f"{attack} ({label}, n = 200)"}
    recs = [rec("cw2", 0.0, 19.5, 0.0, "10 iterations, unbounded"), rec("cw2_l2", 0.0, 19.5, 0.0, "L2 <= 0.5"),
            rec("ddn", 0.0, 29.5, 51.5, "20 iterations, unbounded"), rec("ddn_l2", 48.5, 48.5, 100.0, "L2 <= 0.5")]
    text = report.minimal_norm_sentence(recs, clean_tpap=48.5)  # cifar's run: DDN-20 found nothing within 0.5
    assert "`ddn_l2` leaves the bare model 48.5 % and TPAP 48.5 % (it returned every input unchanged" in text
    assert "a weak attack, not robustness; `cw2_l2` under the same budget leaves the bare model 0.0 %" in text
    recs[3] = rec("ddn_l2", 10.0, 30.0, 60.0, "L2 <= 0.5")  # it moved some inputs: no such remark
    assert "weak attack" not in report.minimal_norm_sentence(recs, clean_tpap=48.5)


def test_budget_of_reads_each_kind_of_label():
    from tpap_nb.report.benchmark import budget_of
    assert budget_of({"label": "pgd20 (20 x 0.003, random start, 1 restart, eps 8/255, n = 200)"}) == "eps 8/255"
    assert budget_of({"label": "ddn_l2 (20 iterations, L2 <= 0.5, n = 200)"}) == "L2 <= 0.5"
    flawed = ("sta_advertorch [reproduction of a flaw] (5 rounds x 10 L-BFGS iterations, constant 1 never searched, "
              "failures returned as zero images, n = 200)")
    assert budget_of({"label": flawed}) == "no budget: a fixed penalty on the flow"
    assert budget_of({"label": "x"}) == "budget not in the record's label"
