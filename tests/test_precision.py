"""experiments.precision: the same images and attacks in float32 and bf16, compared image by image."""
import json

import tpap_nb as tp
from tpap_nb.experiments import precision as P


def test_float32_and_bf16_records_and_their_comparison(ro_model, test_xy):
    x, y = test_xy
    cfg = {"eps": 0.3, "attack_eps": 0.3, "xi": 0.15, "seed": 0}
    records = P.measure(ro_model, x[:64], y[:64], cfg, attacks=("clean", "pgd20"))
    assert [(r["attack"], r["precision"]) for r in records] == [
        ("clean", "float32"), ("clean", "bf16"), ("pgd20", "float32"), ("pgd20", "bf16")]
    assert "bf16 autocast" in records[1]["runtime"] and "float32" in records[0]["runtime"]
    rows = P.compare(records)
    for row in rows:
        a, b = (r for r in records if r["attack"] == row["attack"])
        for key in ("bare", "tpap"):
            # a difference of accuracies is made of the images whose verdict differs
            assert abs(row[f"diff_{key}"]) <= 100 * row[f"discordant_{key}"] / 64 + 1e-9
            assert row[f"discordant_{key}"] == int((a[f"_{key}"] != b[f"_{key}"]).sum())
        assert row["within_limit"] == (max(abs(row["diff_bare"]), abs(row["diff_tpap"])) <= P.LIMIT_POINTS)
    pgd = {r["precision"]: r for r in records if r["attack"] == "pgd20"}
    clean = {r["precision"]: r for r in records if r["attack"] == "clean"}
    assert pgd["float32"]["acc_bare"] < clean["float32"]["acc_bare"]  # the attack ran


def test_cli_on_a_checkpoint_appends_records(tmp_path, digits):
    cfg = tp.get_profile("smoke", epochs=1, eval_every=0, width=4)
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=4)
    ckpt = tmp_path / "m.pt"
    tp.fit(model, digits.subset(n_train=128), cfg, ckpt=ckpt, progress=False)
    out = tmp_path / "p.jsonl"
    res = P.main(["--checkpoint", str(ckpt), "--n", "32", "--attacks", "clean,pgd20", "--eps", "76", "--xi", "38",
                  "--out", str(out)])
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["accuracy"] * 4 + ["comparison"] * 2
    assert all(r["checkpoint"] == "m.pt" and r["dataset"] == "digits" for r in lines)
    assert len(res["comparison"]) == 2


def test_every_registered_attack_and_grad_cam_run_inside_bf16_autocast(ro_model, test_xy):
    """A cifar run attacks inside the fast path's bf16 autocast: attacks that hand tensors to numpy (STA's
    L-BFGS) or libraries that do (pytorch-grad-cam) must still run there (STA failed so in notebook 03)."""
    import torch

    from tpap_nb.attacks import registry
    from tpap_nb.experiments import gradcam

    x, y = test_xy
    x, y = x[:4], y[:4]
    small = {"steps": 2, "max_iterations": 2, "search_steps": 1, "binary_search_steps": 1, "dual_steps": 2,
             "n_queries": 20, "eps": 0.3}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name, spec in registry.ATTACKS.items():
            kwargs = {k: v for k, v in small.items() if k in spec.defaults}
            x_adv = registry.build_attack(name, ro_model, **kwargs)(x, y)
            assert x_adv.shape == x.shape and x_adv.dtype == x.dtype, name
            assert not any(m.training for m in ro_model.modules()), f"{name} left the network in train mode"
        maps = gradcam.gradcam_maps(ro_model, x)
    assert maps["cam"].shape == (4, 8, 8)


def test_autoattack_runs_on_a_channels_last_rgb_network_under_bf16():
    """A channels_last network hands back a channels_last gradient w.r.t. x; AutoAttack's FAB-T `.view`s it,
    which failed in notebook 03 on cifar. The kit's wrapper hands torchattacks a contiguous gradient."""
    import torch

    from tpap_nb.attacks import registry

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)).eval()
    net = net.to(memory_format=torch.channels_last)
    x = torch.rand(6, 3, 8, 8)
    y = net(x).argmax(1)  # every image starts correctly classified, so each sub-attack has work
    x_in = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = registry.Float32Logits(net)(x_in)
        bare, = torch.autograd.grad(net(x_in).float().sum(), x_in)
    grad, = torch.autograd.grad(logits.sum(), x_in)
    assert logits.dtype == torch.float32 and grad.is_contiguous()
    assert not bare.is_contiguous(), "this network no longer yields a channels_last gradient: the test tests nothing"
    for inputs in (x, x.contiguous(memory_format=torch.channels_last)):  # the fast path hands channels_last inputs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_adv = registry.build_attack("aa", net, eps=1e-3, steps=2, n_queries=5)(inputs, y)
        assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 1e-3 + 1e-6


def test_notebook_07s_torchattacks_attacks_take_channels_last_inputs_under_bf16():
    """Square, APGD-CE and APGD-T from torchattacks (notebook 07) on the fast path's channels_last inputs."""
    import torch

    from tpap_nb.experiments import adaptive

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)).eval()
    x = torch.rand(6, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = net(x).argmax(1)
    counts = {"n_queries": 5, "apgd_steps": 2, "restarts": 1, "steps": 2}
    for name in ("square", "apgd-ce", "apgd-t"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_adv = adaptive._craft(name, net, None, x, y, 1e-3, counts, 10, 0)
        assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 1e-3 + 1e-6, name


def test_every_registered_attack_runs_on_channels_last_rgb_inputs_under_bf16():
    """cifar's fast path: an RGB network, channels_last inputs, bf16 autocast; every attack of the registry must run
    there (FAB-T inside AutoAttack failed so in notebook 03, after 18 minutes of attacks)."""
    import torch

    from tpap_nb.attacks import registry

    torch.manual_seed(0)
    net = tp.build_model("resnet18", 10, 3, width=4).eval()
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = net(x).argmax(1)  # every image starts correctly classified: each attack (and sub-attack) has work
    small = {"steps": 2, "max_iterations": 2, "search_steps": 1, "binary_search_steps": 1, "dual_steps": 2,
             "n_queries": 10, "eps": 8 / 255}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name, spec in registry.ATTACKS.items():
            kwargs = {k: v for k, v in small.items() if k in spec.defaults}
            x_adv = registry.build_attack(name, net, **kwargs)(x, y)
            assert x_adv.shape == x.shape and torch.isfinite(x_adv).all(), name
