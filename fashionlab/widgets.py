"""Interactive editors for the notebooks (ipywidgets). They call the package's methods and hold
no method logic of their own.

Chapters: "Mask-free, classifier-guided fashion attribute editing" (the guided editor) and
"Stable Diffusion and LoRA" (the prompt box).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .data import garments
from .data.transforms import to_tensor
from .methods.guided_edit import GuidedEditConfig, guided_edit
from .methods.text_to_image import generate
from .viz import heatmap, image_grid


def edit_figure(denoiser, alphas_cumprod: torch.Tensor, classifier, perceptual, spec: garments.GarmentSpec,
                targets: dict[str, str], cfg, seed: int = 0):
    """What the editor runs on *Edit*: Procedure 1 on the render of ``spec`` with ``cfg`` (noise from
    ``torch.Generator().manual_seed(seed)``). Returns the edit and a figure of the source, the
    attention region M-bar half-way, and the result. Also the static book's pre-run example.
    The source is rendered in the classifier's dtype, so a float64 copy of the models gives a
    float64 edit (chapter 06 runs its single demonstration so, to be the same on every CPU)."""
    parameter = next(classifier.parameters())
    x = to_tensor(garments.render(spec).image).unsqueeze(0).to(parameter.device, parameter.dtype)
    result = guided_edit(denoiser, alphas_cumprod, classifier, x, targets, cfg, perceptual, [spec.category],
                         torch.Generator().manual_seed(seed), return_trajectory=True)
    mask = result.masks[len(result.masks) // 2][0, 0]
    fig = image_grid([x[0].cpu(), heatmap(mask, vmax=1), result.edited[0].cpu()], ncols=3,
                     titles=["source", "M-bar (mid-way)", "edited"], cell=2.0)
    return result, fig


def guided_editor(denoiser, alphas_cumprod: torch.Tensor, classifier, perceptual=None, seed: int = 600,
                  n_garments: int = 20, cfg=None):
    """A small editor for :func:`fashionlab.methods.guided_edit.guided_edit`: pick one of
    ``n_garments`` held-out garments (Garments ``seed``), up to two target attributes, lambda and
    k, then press *Edit*. ``cfg`` (a ``GuidedEditConfig``; default: its defaults) gives the
    starting values and every setting the editor does not show. Returns the widget box (display it
    as a cell's last value)."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display


    cfg = GuidedEditConfig() if cfg is None else cfg
    specs = [garments.spec_for(seed, i, "in") for i in range(n_garments)]
    garment = W.Dropdown(options=[(f"{i}: {garments.caption(s, 0)}", i) for i, s in enumerate(specs)], value=0,
                         description="garment", layout=W.Layout(width="520px"))
    choices = [("-", None)] + [(f"{a} = {v}", (a, v)) for a in garments.ATTRIBUTES for v in garments.SCHEMA[a]]
    first = W.Dropdown(options=choices, value=("pattern", "striped"), description="target 1")
    second = W.Dropdown(options=choices, value=None, description="target 2")
    strength = W.FloatLogSlider(value=cfg.strength, base=10, min=0, max=5, description="lambda")
    depth = W.IntSlider(value=cfg.depth, min=100, max=950, step=50, description="k")
    steps = W.IntSlider(value=cfg.steps, min=10, max=100, step=5, description="steps")
    background = W.Checkbox(value=cfg.background, description="background loss")
    run = W.Button(description="Edit", button_style="primary")
    output = W.Output()
    state: dict = {"result": None, "message": ""}

    def on_click(_):
        output.clear_output(wait=True)
        state.update(result=None, message="")
        with output:
            spec = specs[garment.value]
            targets = dict(t for t in (first.value, second.value) if t is not None)
            if not targets:
                state["message"] = "choose at least one target"
                print(state["message"])
                return
            run_cfg = replace(cfg, strength=strength.value, depth=depth.value,
                              steps=min(steps.value, depth.value + 1), background=background.value)
            try:
                result, fig = edit_figure(denoiser, alphas_cumprod, classifier, perceptual, spec, targets, run_cfg)
            except ValueError as err:  # e.g. a neckline on trousers
                state["message"] = str(err)
                print(err)
                return
            state["result"] = result
            display(fig)
            plt.close(fig)
            print(f"{result.seconds:.1f} s")

    run.on_click(on_click)
    box = W.VBox([garment, W.HBox([first, second]), W.HBox([strength, depth]), W.HBox([steps, background]), run,
                  output])
    box.state = state  # the last edit (or message), for scripts and tests
    return box


def has_lora(pipe) -> bool:
    """Whether ``pipe``'s UNet carries a LoRA adapter."""
    return bool(getattr(pipe.unet, "peft_config", None))


def prompt_figure(pipe, prompt: str, seed: int = 0, steps: int = 25, guidance: float = 4.0, lora: bool = True,
                  n: int = 4):
    """What the prompt box runs on *Generate*: ``n`` images of ``prompt`` (seeds ``seed`` ..
    ``seed + n - 1``) with the pipeline's LoRA adapter on or off (``lora``; ignored without an
    adapter), as one figure. Returns (images in [-1, 1], figure). The adapter is left on."""
    if lora and not has_lora(pipe):
        raise ValueError("lora=True but the pipeline has no LoRA adapter; load one (zoo.load('garments-sd-lora-"
                         "catalog') or pipe.load_lora_weights(folder)) or pass lora=False")
    if has_lora(pipe):
        pipe.enable_lora() if lora else pipe.disable_lora()
    try:
        images = generate(pipe, [prompt] * n, seed=seed, steps=steps, guidance=guidance)
    finally:
        if has_lora(pipe):
            pipe.enable_lora()
    fig = image_grid(list(images.cpu()), ncols=n, cell=1.6, titles=[f"seed {seed + i}" for i in range(n)])
    return images, fig


def prompt_box(pipe, prompt: str = "an image of a 2012 Casual Summer Blue Women's Dress", n: int = 4):
    """The chapter 08 tool: a prompt, a seed, DDIM steps, the guidance scale and (if ``pipe`` has a
    LoRA adapter) the adapter on or off; *Generate* draws ``n`` images. Bad values (an empty
    prompt) print the library's message. Returns the widget box (display it as a cell's last
    value); ``box.state`` holds the last images or message."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    text = W.Text(value=prompt, description="prompt", layout=W.Layout(width="560px"))
    seed = W.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed")
    steps = W.IntSlider(value=25, min=1, max=100, description="steps")
    guidance = W.FloatSlider(value=4.0, min=1.0, max=12.0, step=0.5, description="guidance")
    lora = W.Checkbox(value=has_lora(pipe), disabled=not has_lora(pipe), description="LoRA adapter")
    run = W.Button(description="Generate", button_style="primary")
    output = W.Output()
    state: dict = {"images": None, "message": ""}

    def on_click(_):
        output.clear_output(wait=True)
        state.update(images=None, message="")
        with output:
            try:
                images, fig = prompt_figure(pipe, text.value, seed.value, steps.value, guidance.value, lora.value, n)
            except ValueError as err:  # an empty prompt, say
                state["message"] = str(err)
                print(err)
                return
            state["images"] = images
            display(fig)
            plt.close(fig)

    run.on_click(on_click)
    box = W.VBox([text, W.HBox([seed, steps]), W.HBox([guidance, lora]), run, output])
    box.state = state
    return box
