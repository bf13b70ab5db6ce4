"""Issue 21: Fig. 6's Grad-CAM layer is the deepest conv map still 4 cells on a side (2x2 on 8x8 digits says
too little), chosen by probing the network with forward hooks, and the notebook says why in one sentence."""
import torch

from tpap_nb import models
from tpap_nb.experiments import gradcam


def test_small_cnn_on_digits_gets_a_4x4_map_not_the_2x2_one():
    model, x = models.small_cnn(), torch.rand(3, 1, 8, 8)
    assert gradcam.gradcam_layer(model, x) == ("body.4", 4)
    assert gradcam.gradcam_layer(model, x, min_side=2) == ("body.6", 2)  # the deepest block: today's cam_layer
    assert gradcam.gradcam_layer(model, x, min_side=16) == ("body.1", 8)  # none that fine: the finest there is
    assert gradcam.count_hooks(model) == 0
    note = gradcam.layer_choice_note(model, x, "body.4")
    assert "`body.4`" in note and "4x4 map on 8x8 inputs" in note and "`body.6`, has only 2x2" in note
    assert "beyond it" in gradcam.layer_choice_note(model, x, "body.6")


def test_resnet18_on_32x32_keeps_its_last_block():
    model, x = models.resnet18(), torch.rand(1, 3, 32, 32)
    name, side = gradcam.gradcam_layer(model, x)
    assert side == 4 and gradcam.find_layer(model, name) is model.cam_layer
    assert "4x4 map on 32x32 inputs gives one cell per 8x8 pixels" in gradcam.layer_choice_note(model, x, name)
    assert gradcam.count_hooks(model) == 0


def test_fig6_attention_defaults_to_the_chosen_layer():
    torch.manual_seed(0)
    model, x = models.small_cnn(), torch.rand(4, 1, 8, 8)
    res = gradcam.fig6_attention(model, x, torch.arange(4), eps=0.1, alpha=0.02, xi=0.05, steps=2, progress=False)
    assert res["layer_hw"] == (4, 4)
