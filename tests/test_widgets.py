"""The guided editor widget builds, runs an edit on click, and reports bad targets."""

import matplotlib
import torch
from diffusers import DDPMScheduler

from fashionlab.data import garments
from fashionlab.diffusion import core
from fashionlab.models.attrnet import attrnet_for
from fashionlab.widgets import guided_editor
from tests.test_diffusion_engine import tiny_unet


matplotlib.use("Agg")


def test_guided_editor_runs_and_reports_errors():
    torch.manual_seed(0)
    n = 12
    box = guided_editor(core.PixelDenoiser(tiny_unet()), DDPMScheduler(num_train_timesteps=1000).alphas_cumprod,
                        attrnet_for("garments-clip-s").eval(), seed=600, n_garments=n)
    garment, (first, _), (_, depth), (steps, _), run = (
        box.children[0], box.children[1].children, box.children[2].children, box.children[3].children,
        box.children[4])
    depth.value, steps.value = 100, 10
    run.click()
    result = box.state["result"]
    assert result is not None and result.edited.shape == (1, 3, 64, 64) and box.state["message"] == ""
    assert result.grid[-1] == 100  # k from the slider
    bottom = next(i for i in range(n) if garments.spec_for(600, i, "in").category in garments.BOTTOMS)
    garment.value, first.value = bottom, ("sleeve", "long")
    run.click()  # a sleeve on a skirt or trousers: the library's message, not a traceback
    assert box.state["result"] is None and "does not apply" in box.state["message"]


def test_guided_editor_starts_from_the_given_config():
    from fashionlab.methods.guided_edit import GuidedEditConfig

    cfg = GuidedEditConfig(strength=300.0, depth=500, steps=20, background=False)
    box = guided_editor(core.PixelDenoiser(tiny_unet()), DDPMScheduler(num_train_timesteps=1000).alphas_cumprod,
                        attrnet_for("garments-clip-s").eval(), n_garments=2, cfg=cfg)
    (strength, depth), (steps, background) = box.children[2].children, box.children[3].children
    assert (strength.value, depth.value, steps.value, background.value) == (300.0, 500, 20, False)
