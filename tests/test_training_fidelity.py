"""Training as the authors' code does it (issue 12): the clean BatchNorm forward, separate TRADES/MART
passes, their schedule, and training eps / attack eps / xi kept apart."""
import copy
import json

import pytest
import torch
from conftest import fresh_cnn

import tpap_nb as tp
from tpap_nb import train as T
from tpap_nb.attacks import fgsm
from tpap_nb.config import AUTHORS_SCHEDULE

BASE = tp.get_profile("smoke")  # a complete config; each test changes what it is about


def _bn(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _one_step(model, x, y, cfg):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = T.training_loss(model, x, y, cfg)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


# ------------------------------------------------------------------ the clean BatchNorm forward
@pytest.mark.parametrize("recipe", ["fgsm", "fgsm_multi", "pgd"])
def test_clean_bn_forward_changes_bn_statistics_and_nothing_else(recipe):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    cfg = BASE | {"recipe": recipe, "eps": 0.2, "pgd_alpha": 0.05, "pgd_steps": 3}
    m_off, m_on = fresh_cnn(1), fresh_cnn(1)
    torch.manual_seed(1)
    loss_off = _one_step(m_off, x, y, cfg)
    torch.manual_seed(1)
    loss_on = _one_step(m_on, x, y, cfg | {"clean_bn_forward": True})
    assert torch.equal(loss_off, loss_on)
    for (name, a), b in zip(m_off.named_parameters(), m_on.parameters()):
        assert torch.equal(a, b), f"{name} differs: the clean forward must not touch the gradient"
    changed = [not torch.allclose(a.running_mean, b.running_mean) for a, b in zip(_bn(m_off), _bn(m_on))]
    assert changed and all(changed)
    assert all(b.num_batches_tracked == 2 for b in _bn(m_on)) and all(b.num_batches_tracked == 1 for b in _bn(m_off))


def test_clean_bn_forward_is_the_authors_order_clean_then_adversarial():
    """train_fgsm_at_cifar10_TPAP.py:207-219: craft in eval mode, then model(data), then model(data_adv)."""
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model = fresh_cnn(2)
    ref = copy.deepcopy(model)
    T.training_loss(model.train(), x, y, BASE | {"recipe": "fgsm", "eps": 0.2, "clean_bn_forward": True})
    x_adv = fgsm(ref.eval(), x, y, 0.2)
    ref.train()
    with torch.no_grad():
        ref(x)
        ref(x_adv)
    for a, b in zip(_bn(model), _bn(ref)):
        assert torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)


def test_clean_bn_forward_names_a_run_only_when_on():
    cfg = T.recipe_config(tp.get_profile("quick"), "fgsm")
    assert cfg["clean_bn_forward"] is False
    assert T.run_name(cfg) == T.run_name({k: v for k, v in cfg.items() if k != "clean_bn_forward"})
    assert T.run_name(cfg | {"clean_bn_forward": True}) != T.run_name(cfg)
    assert tp.get_profile("paper")["clean_bn_forward"] and tp.get_profile("gpu")["clean_bn_forward"]
    assert not tp.get_profile("smoke")["clean_bn_forward"]


def test_a_checkpoint_trained_without_the_clean_forward_is_not_resumed_with_it(digits, tmp_path):
    small = digits.subset(n_train=64)
    cfg = tp.get_profile("smoke", epochs=1, eval_every=0, width=4)
    path = tmp_path / "run.pt"
    tp.fit(tp.build_model("small_cnn", 10, 1, width=4), small, cfg, ckpt=path, progress=False)
    with pytest.raises(T.CheckpointError, match="clean_bn_forward"):
        tp.fit(tp.build_model("small_cnn", 10, 1, width=4), small, cfg | {"epochs": 2, "clean_bn_forward": True},
               ckpt=path, progress=False)


# ------------------------------------------------------------------ TRADES and MART: two passes
@pytest.mark.parametrize("recipe", ["trades", "mart", "fgsm_trades", "fgsm_mart"])
def test_trades_and_mart_pass_clean_and_adversarial_batches_separately(recipe):
    model = fresh_cnn(3)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    calls = []
    model.register_forward_pre_hook(lambda m, inp: calls.append((m.training, len(inp[0]), inp[0].detach().clone())))
    T.training_loss(model.train(), x, y, BASE | {"recipe": recipe, "eps": 0.1, "pgd_alpha": 0.03,
                                          "pgd_steps": 2})
    train_calls = [c for c in calls if c[0]]
    assert [n for _, n, _ in train_calls] == [8, 8], "one clean and one adversarial batch, never joined"
    assert torch.equal(train_calls[0][2], x) and not torch.equal(train_calls[1][2], x)  # clean first


# ------------------------------------------------------------------ the authors' schedule
def test_authors_schedule_is_offered_by_name():
    c10 = tp.get_profile("paper", schedule="authors")
    assert (c10["epochs"], c10["milestones"]) == (100, (75, 90, 140))  # train_fgsm_at_cifar10_TPAP.py:163,168
    assert tp.get_profile("paper")["epochs"] == 150  # the paper's text (Sec. 4.1.2)
    assert tp.get_profile("paper", dataset="svhn", schedule="authors")["milestones"] == (75, 90)
    assert tp.get_profile("paper", schedule="authors", epochs=7)["epochs"] == 7  # an override still wins
    assert T.recipe_config(c10, "pgd")["epochs"] == 120  # the authors' PGD-AT script on either schedule
    assert set(AUTHORS_SCHEDULE) == {"cifar10", "cifar100", "svhn", "tiny-imagenet"}
    with pytest.raises(ValueError, match="schedule='authors' is known for"):
        tp.get_profile("quick", schedule="authors")
    with pytest.raises(ValueError, match="schedule='fast' must be one of"):
        tp.get_profile("paper", schedule="fast")


# ------------------------------------------------------------------ three radii
def test_cifar100_paper_trains_fgsm_ro_at_12_and_attacks_and_baselines_at_8():
    cfg = tp.get_profile("paper", dataset="cifar100")
    assert cfg["eps"] == pytest.approx(12 / 255) and cfg["attack_eps"] == pytest.approx(8 / 255)
    assert cfg["xi"] == pytest.approx(8 / 255)
    for recipe in ("fgsm", "fgsm_multi", "fgsm_trades", "fgsm_mart"):
        assert T.recipe_config(cfg, recipe)["eps"] == pytest.approx(12 / 255)
    for recipe in ("pgd", "trades", "mart"):
        rc = T.recipe_config(cfg, recipe)
        assert rc["eps"] == pytest.approx(8 / 255) and rc["attack_eps"] == pytest.approx(8 / 255)
    from tpap_nb.evaluate import attack_overrides

    over = attack_overrides("pgd20", T.recipe_config(cfg, "fgsm"))
    assert "eps" not in over or over["eps"] == pytest.approx(8 / 255)  # the paper's 8/255: nothing to move
    c10 = tp.get_profile("paper")
    assert c10["attack_eps"] == c10["eps"] == pytest.approx(8 / 255)
    assert tp.get_profile("paper", dataset="cifar100", eps=10 / 255)["attack_eps"] == pytest.approx(10 / 255)


def test_any_profile_training_fgsm_ro_above_the_attack_eps_trains_its_baselines_at_the_attack_eps():
    cfg = tp.get_profile("quick", eps=0.4, attack_eps=0.3)
    assert cfg["baseline_eps"] == pytest.approx(0.3)
    assert T.recipe_config(cfg, "fgsm")["eps"] == pytest.approx(0.4)
    assert [T.recipe_config(cfg, r)["eps"] for r in ("pgd", "trades", "mart")] == pytest.approx([0.3] * 3)
    same = tp.get_profile("quick", eps=0.3)
    assert same["baseline_eps"] is None and T.recipe_config(same, "pgd")["eps"] == pytest.approx(0.3)


def test_per_epoch_evaluation_attacks_at_the_attack_eps(monkeypatch, digits):
    from tpap_nb import evaluate as E

    seen = []
    real = E.fgsm
    monkeypatch.setattr(E, "fgsm", lambda m, a, b, eps: seen.append(eps) or real(m, a, b, eps))
    cfg = tp.get_profile("smoke", eps=0.3, attack_eps=0.1, n_eval=8)
    E.evaluate_epoch(fresh_cnn(), digits, cfg)
    assert seen and all(e == pytest.approx(0.1) for e in seen)


def test_fig5_sweep_varies_training_eps_with_attack_eps_and_xi_fixed(monkeypatch):
    from tpap_nb.experiments import fig5

    runs = []

    def fake(cfg, progress=True):
        runs.append(cfg)
        return None, [{"epoch": 1, "test_clean": 0.5}], None

    monkeypatch.setattr(fig5, "get_or_train", fake)
    cfg = tp.get_profile("smoke")
    fig5.fig5_sweep(cfg, epochs=2, progress=False)
    eps_runs = runs[:3]
    assert [r["eps"] for r in eps_runs] == pytest.approx([0.3, 0.45, 0.6])
    assert {r["attack_eps"] for r in runs} == {cfg["eps"]} and {r["xi"] for r in runs} == {cfg["xi"]}


# ------------------------------------------------------------------ xi is chosen on a validation split
def test_validation_split_is_carved_from_train_seeded_and_class_mixed(digits):
    train, val = digits.validation_split(360, seed=0)
    assert len(train.y_train) == len(val.y_train) == 1437 - 360 and len(val.y_test) == 360
    assert torch.equal(train.x_test, digits.x_test)  # the reported test split is untouched
    flat = lambda x: {bytes(i.flatten().tolist()) for i in x}  # noqa: E731
    held, kept, test = flat(val.x_test), flat(train.x_train), flat(digits.x_test)
    assert held <= flat(digits.x_train) and not held & kept and not held & test
    assert len(set(val.y_test[:50].tolist())) == 10  # the first images already mix classes
    again = digits.validation_split(360, seed=0)[1]
    other = digits.validation_split(360, seed=1)[1]
    assert torch.equal(again.x_test, val.x_test) and not torch.equal(other.y_test, val.y_test)
    with pytest.raises(ValueError, match="n_val=1437 must be between"):
        digits.validation_split(1437)


def test_seed_check_measures_the_validation_split_and_choose_xi_refuses_the_test_split(monkeypatch):
    from tpap_nb import data as D
    from tpap_nb.experiments import seeds

    real = D.Dataset.validation_split
    asked = []
    monkeypatch.setattr(D.Dataset, "validation_split", lambda self, n, s=0: asked.append(n) or real(self, n, s))
    cfg = tp.get_profile("smoke", epochs=1, width=4, n_eval=40)
    recs = seeds.seed_check(cfg, seeds=(0,), xi_fractions=(0.5, 1.0), progress=False)
    assert asked == [40] and {r["split"] for r in recs} == {"validation"} and recs[0]["n_train"] == 512  # of 1437 - 40
    assert [r["xi"] for r in recs] == pytest.approx([0.15, 0.3])
    best = seeds.choose_xi(recs, max_clean_drop=100.0)
    assert best["split"] == "validation" and best["xi/eps"] in (0.5, 1.0)
    with pytest.raises(ValueError, match="test split"):
        seeds.choose_xi([r | {"split": "test"} for r in recs])


def test_choose_xi_maximises_pgd20_within_the_clean_budget_on_every_seed():
    from tpap_nb.experiments.seeds import choose_xi

    def rec(seed, f, clean, pgd):
        return {"seed": seed, "xi/eps": f, "xi": f * 0.3, "split": "validation", "bare_clean": 95.0,
                "tpap_clean": clean, "tpap_pgd20": pgd}

    recs = [rec(0, 0.6, 91.0, 85.0), rec(1, 0.6, 89.0, 86.0),  # one seed drops 6 points: out
            rec(0, 0.7, 93.0, 78.0), rec(1, 0.7, 92.0, 76.0),
            rec(0, 1.0, 95.0, 40.0), rec(1, 1.0, 94.0, 45.0)]
    best = choose_xi(recs)
    assert best["xi/eps"] == 0.7 and best["mean_tpap_pgd20"] == pytest.approx(77.0)
    assert choose_xi(recs, max_clean_drop=7.0)["xi/eps"] == 0.6


def test_seeds_cli_appends_per_seed_and_resumes_without_retraining(tmp_path, monkeypatch, capsys):
    from tpap_nb.experiments import seeds

    out = tmp_path / "seeds.jsonl"
    args = ["--profile", "smoke", "--seeds", "0", "--xi-fractions", "0.5", "1.0", "--out", str(out)]
    seeds.main(args)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["seed"], r["xi/eps"], r["profile"], r["split"]) for r in rows] == [
        (0, 0.5, "smoke", "validation"), (0, 1.0, "smoke", "validation")]
    monkeypatch.setattr(seeds, "seed_check", lambda *a, **k: pytest.fail("seed 0 is done: no retraining"))
    seeds.main(args)
    assert "already in" in capsys.readouterr().out and len(out.read_text().splitlines()) == 2


def test_every_profile_status_names_a_profile():
    from tpap_nb.config import PROFILE_STATUS, PROFILES

    assert set(PROFILE_STATUS) <= set(PROFILES) and "gpu" in PROFILE_STATUS  # cifar overfits since issue 18


def test_a_reused_checkpoint_is_re_evaluated_when_xi_or_the_attack_eps_differ(tmp_path, monkeypatch, digits):
    cfg = tp.get_profile("smoke", epochs=1, width=4, n_eval=16)
    data = digits.subset(n_train=128)
    ckpt = tmp_path / "run.pt"
    T.fit(build(), data, cfg, ckpt=ckpt, progress=False)
    same = T.fit(build(), data, cfg, ckpt=ckpt, progress=False)
    assert same[-1]["eval_xi"] == cfg["xi"] and same[-1]["eval_n"] == 16
    other = T.fit(build(), data, cfg | {"xi": 0.05}, ckpt=ckpt, progress=False)
    assert other[-1]["eval_xi"] == 0.05 and other[-1]["eval_eps"] == cfg["eps"]
    from tpap_nb.evaluate import EpochEvaluation

    class Refuses(EpochEvaluation):
        def __call__(self, *a):
            pytest.fail("settings match: no re-evaluation")

    T.fit(build(), data, cfg, ckpt=ckpt, progress=False, evaluate=Refuses())  # the checkpoint keeps the creator's
    asked = cfg | {"xi": 0.05}
    assert T.reevaluated(build(), data, asked, other, "run", Refuses()) == other  # the record asked for
    with pytest.raises(pytest.fail.Exception, match="no re-evaluation"):
        T.reevaluated(build(), data, asked | {"n_eval": 8}, other, "run", Refuses())


def build():
    return tp.build_model("small_cnn", 10, 1, 4)


def test_fit_measures_epochs_with_the_evaluation_it_is_handed(digits):
    from tpap_nb import evaluate as E

    calls = []

    def clean_only(model, data, cfg):  # a handed evaluation: any callable (model, data, cfg) -> numbers
        calls.append(len(calls))
        return {"clean_only": float(len(calls))}

    cfg = tp.get_profile("smoke", epochs=3, eval_every=2, width=4)
    data = digits.subset(n_train=64)
    hist = T.fit(build(), data, cfg, progress=False, evaluate=clean_only)
    assert [h.get("clean_only") for h in hist] == [None, 1.0, 2.0]  # every 2nd epoch and the last
    assert "eval_seconds" in hist[1] and "test_clean" not in hist[1]
    T.fit(build(), data, cfg | {"eval_every": 0}, progress=False, evaluate=clean_only)
    assert len(calls) == 2  # eval_every 0: never
    assert T.evaluate_epoch is E.evaluate_epoch  # still importable from train (its old home)


def test_seed_check_also_test_measures_the_same_networks_on_the_test_images():
    from tpap_nb.experiments import seeds

    cfg = tp.get_profile("smoke", epochs=1, width=4, n_eval=24, n_train=100)
    recs = seeds.seed_check(cfg, seeds=(0,), xi_fractions=(1.0,), progress=False, also_test=True)
    assert [(r["split"], r["n"], r["n_train"], r["held_out"]) for r in recs] == [
        ("validation", 24, 100, 24), ("test", 24, 100, 24)]
    assert recs[0]["train_seconds"] == recs[1]["train_seconds"]  # one network, two measurements
    with pytest.raises(ValueError, match="split='validation'"):
        seeds.seed_check(cfg, seeds=(0,), split="test", also_test=True)


def test_checkpoint_check_measures_each_run_on_its_own_held_out_images(tmp_path, digits):
    from tpap_nb.experiments import seeds

    cfg = tp.get_profile("smoke", epochs=1, width=4, n_eval=16)
    _, val = digits.validation_split(60, seed=3)  # as scripts/cifar_probe.py draws it for seed 3
    ckpt = tmp_path / "probe-s3.pt"
    model = build()
    T.fit(model, val, cfg | {"seed": 3, "n_train": len(val.y_train)}, ckpt=ckpt, progress=False)
    recs = seeds.checkpoint_check([ckpt], cfg, n_val=60, n_test=30, xi_fractions=(0.5, 1.0), progress=False)
    assert [(r["split"], r["xi/eps"], r["n"], r["seed"], r["checkpoint"]) for r in recs] == [
        ("validation", 0.5, 60, 3, "probe-s3.pt"), ("validation", 1.0, 60, 3, "probe-s3.pt"),
        ("test", 0.5, 30, 3, "probe-s3.pt"), ("test", 1.0, 30, 3, "probe-s3.pt")]
    x, y = val.test_batch(60)
    with torch.no_grad():
        own = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert recs[0]["bare_clean"] == pytest.approx(100 * own)
    short = tmp_path / "short.pt"
    T.fit(build(), val, cfg | {"seed": 3, "epochs": 2, "n_train": len(val.y_train)}, ckpt=short, progress=False)
    state = torch.load(short, weights_only=True)
    state["history"] = state["history"][:1]
    torch.save(state, short)
    with pytest.raises(ValueError, match="1 of 2 epochs"):
        seeds.checkpoint_check([short], cfg, n_val=60, n_test=30, progress=False)
