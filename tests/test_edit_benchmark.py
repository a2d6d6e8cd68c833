"""Edit tasks, their ground-truth scores and the resumable edit-table runner."""

import json

import pytest
import torch

from fashionlab import metrics
from fashionlab.data import garments
from fashionlab.eval import edits
from fashionlab.experiments import ch06_guided_edit
from fashionlab.methods import blended_diffusion
from fashionlab.methods import guided_edit
from fashionlab.models.oracle import GarmentOracle


@pytest.fixture(scope="module")
def oracle():
    torch.manual_seed(0)
    return GarmentOracle(widths=(8, 8, 8, 8)).eval()


def test_tasks_are_applicable_changes_and_reproducible():
    tasks = edits.make_tasks(seed=500, n_per_type=5)
    assert len(tasks) == 5 * len(edits.EDIT_TYPES)
    for task in tasks:
        assert getattr(task.source, task.attribute) is not None
        assert task.value != getattr(task.source, task.attribute)
        changed = {a for a in garments.ATTRIBUTES if getattr(task.source, a) != getattr(task.target, a)}
        assert task.attribute in changed
        if task.attribute != "category":  # a category edit may switch sleeve/collar/neckline on or off
            assert changed == {task.attribute}
        else:
            assert (task.source.category in garments.BOTTOMS) == (task.value in garments.BOTTOMS)
    assert edits.make_tasks(seed=500, n_per_type=5) == tasks
    assert edits.make_tasks(seed=500, n_per_type=5, choice_seed=1) != tasks
    with pytest.raises(ValueError, match="edit types"):
        edits.make_tasks(500, 2, ("hemline",))


def test_ideal_edit_scores_perfectly_with_a_perfect_judge(oracle):
    """Scoring the *ideal* edits with an oracle that reads the ground truth: success 1, consistency 1,
    and the ideal edit changes (almost) nothing outside the ground-truth region."""
    tasks = [t for t in edits.make_tasks(seed=501, n_per_type=3, edit_types=("pattern", "sleeve"))]
    batch = edits.render_tasks(tasks)
    ideal = torch.stack([garments.to_tensor(garments.render(t.target).image) for t in tasks])

    class Truth(torch.nn.Module):
        """Returns one-hot logits of the ideal edits' labels (a judge that cannot be wrong)."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            labels = torch.stack([torch.from_numpy(t.target.attribute_vector()) for t in tasks])
            return {a: torch.nn.functional.one_hot(labels[:, k].clamp(min=0), garments.NUM_CLASSES[a]).float()
                    for k, a in enumerate(garments.ATTRIBUTES)}

    scores = edits.score_edits(batch, ideal, Truth(), metrics.OraclePerceptual(oracle))
    assert scores["success"].tolist() == [1.0] * len(tasks)
    assert scores["consistency"].tolist() == [1.0] * len(tasks)
    texture = torch.tensor([t.attribute == "pattern" for t in tasks])
    assert torch.all(scores["l2_outside"][texture] < 1e-3)  # a pattern lives on the garment
    assert torch.all(scores["l2_outside"] < 1e-2)  # a sleeve edit also re-shades a few seam pixels
    unchanged = edits.score_edits(batch, batch.images, Truth(), metrics.OraclePerceptual(oracle))
    assert torch.all(unchanged["perceptual"] == 0) and torch.all(unchanged["l2_outside"] == 0)
    with pytest.raises(ValueError, match="edited must match"):
        edits.score_edits(batch, ideal[:1], Truth(), metrics.OraclePerceptual(oracle))


def test_edit_table_resumes_and_summarises(tmp_path, oracle):
    tasks = edits.make_tasks(seed=502, n_per_type=3, edit_types=("colour", "neckline"))
    calls = []

    def identity(batch, generator):
        calls.append(len(batch.tasks))
        return batch.images

    def noisy(batch, generator):
        calls.append(len(batch.tasks))
        return (batch.images + 0.2 * torch.randn(batch.images.shape, generator=generator)).clamp(-1, 1)

    out = tmp_path / "edits.json"
    perceptual = metrics.OraclePerceptual(oracle)
    edits.run_edit_table(out, {"identity": identity}, tasks, oracle, perceptual, batch_size=2, progress=False)
    assert calls == [2, 1, 2, 1]
    table = edits.run_edit_table(out, {"identity": identity, "noisy": noisy}, tasks, oracle, perceptual, batch_size=2,
                             progress=False)
    assert calls == [2, 1, 2, 1, 2, 1, 2, 1]  # identity was not re-run
    assert json.loads(out.read_text()) == table
    summary = edits.summarise_edits(table)
    assert set(summary.index) == {(m, a) for m in ("identity", "noisy") for a in ("colour", "neckline")}
    assert (summary["n"] == 3).all()
    assert (summary.loc["identity", "l2_outside"] == 0).all() and (summary.loc["noisy", "l2_outside"] > 0.01).all()
    assert (summary["success_lo"] <= summary["success"]).all() and (summary["success"] <= summary["success_hi"]).all()
    pooled = edits.summarise_edits(table, pooled=True)
    assert set(pooled.index) == {("identity", "all"), ("noisy", "all")} and (pooled["n"] == 6).all()
    per_type = summary.loc["noisy", "l2_outside"]  # equal counts per type, so the pooled mean is their mean
    assert pooled.loc[("noisy", "all"), "l2_outside"] == pytest.approx(per_type.mean())


def test_guided_edit_methods_run_on_task_batches(oracle):
    from diffusers import DDPMScheduler

    from fashionlab.diffusion import core
    from fashionlab.models import clip
    from fashionlab.models.attrnet import attrnet_for
    from tests.test_diffusion_engine import tiny_unet

    torch.manual_seed(0)
    unet = tiny_unet()
    unet.config.sample_size = 64  # a fully convolutional UNet: runs at 64 px
    denoiser = core.PixelDenoiser(unet)
    alphas = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    net = attrnet_for("garments-clip-s").eval()
    methods = ch06_guided_edit.edit_methods(denoiser, alphas, net, clip.create_clip("garments-clip-s"), None,
                              guided_edit.GuidedEditConfig(depth=200, steps=2, views=2),
                              blended_diffusion.BlendedConfig(depth=200, steps=2, views=2))
    batch = edits.render_tasks(edits.make_tasks(503, 2, ("sleeve",)))
    for name, method in methods.items():
        edited = method(batch, torch.Generator().manual_seed(0))
        assert edited.shape == batch.images.shape and torch.isfinite(edited).all(), name
        if name == "Blended Diffusion":  # the user mask is the GT region: nothing changes outside it
            outside = ~batch.regions.unsqueeze(1).expand_as(edited)
            assert torch.equal(edited[outside], batch.images[outside])


def test_chapter06_sweep_writes_its_settings_and_refuses_others(tmp_path, oracle):
    """The results script on random-weight models: every (lambda, background) row is scored, the
    file keeps its settings beside the batches, and a rerun with other settings is refused."""
    from diffusers import DDPMScheduler

    from fashionlab.diffusion import core
    from fashionlab.models.attrnet import attrnet_for
    from tests.test_diffusion_engine import tiny_unet

    torch.manual_seed(0)
    unet = tiny_unet()
    unet.config.sample_size = 64
    perceptual = metrics.OraclePerceptual(oracle)
    models = ch06_guided_edit.EditModels(core.PixelDenoiser(unet), DDPMScheduler(num_train_timesteps=1000).alphas_cumprod,
                          attrnet_for("garments-clip-s").eval(), None, perceptual, oracle, perceptual)
    cfg = guided_edit.GuidedEditConfig(depth=200, steps=2, views=2)
    out = tmp_path / "sweep.json"
    backgrounds = ((1e3, 1e2), None)
    table = ch06_guided_edit.run_sweep(out, 1, models, strengths=(0.0, 100.0), backgrounds=backgrounds, cfg=cfg, progress=False)
    assert table["strengths"] == [0.0, 100.0] and table["backgrounds"] == [[1e3, 1e2], None]
    assert table["config"]["steps"] == 2
    methods = {entry["method"] for entry in table["batches"].values()}
    assert methods == {"lambda=0|mse=1000|pd=100", "lambda=100|mse=1000|pd=100",
                       "lambda=0|no background", "lambda=100|no background"}
    assert len(table["batches"]) == 4 * len(ch06_guided_edit.SWEEP_TYPES)
    summary = edits.summarise_edits(table)
    assert (summary["n"] == 1).all()
    assert ch06_guided_edit.parse_sweep_name(ch06_guided_edit.sweep_name(30.0, (1e3, 1e2))) == (30.0, (1e3, 1e2))
    assert ch06_guided_edit.parse_sweep_name(ch06_guided_edit.sweep_name(0.0, None)) == (0.0, None)
    with pytest.raises(ValueError, match="not a sweep method name"):
        ch06_guided_edit.parse_sweep_name("ours")
    by_setting = ch06_guided_edit.sweep_summary(table)
    assert list(by_setting.index) == [("1000 / 100", 0.0), ("1000 / 100", 100.0), ("none", 0.0), ("none", 100.0)]
    first = summary.loc["lambda=0|mse=1000|pd=100"]
    assert by_setting.loc[("1000 / 100", 0.0), "success"] == pytest.approx(first.success.mean())
    assert by_setting.loc[("1000 / 100", 0.0), "success: colour"] == first.loc["colour", "success"]
    assert 0 <= by_setting["edit score"].min() and (by_setting["edit score"] <= by_setting["success"] + 1e-9).all()
    mock = json.loads(json.dumps(table))
    for entry in mock["batches"].values():  # make lambda 100 with a background loss the clear winner
        hit = entry["method"] == "lambda=100|mse=1000|pd=100"
        entry["success"], entry["consistency"] = [float(hit)], [1.0]
    assert ch06_guided_edit.choose_setting(mock) == (100.0, (1e3, 1e2))
    for entry in mock["batches"].values():  # a tie: the smaller lambda; "no background" never wins
        entry["success"] = [0.0 if entry["method"].endswith("|no background") else 1.0]
    assert ch06_guided_edit.choose_setting(mock) == (0.0, (1e3, 1e2))
    with pytest.raises(ValueError, match="other settings"):
        ch06_guided_edit.run_sweep(out, 1, models, strengths=(0.0, 10.0), backgrounds=backgrounds, cfg=cfg, progress=False)
    stored = json.loads(out.read_text())
    stored["accuracy"] = {"a classifier": 0.9}  # a part's own records are not settings: resuming still works
    out.write_text(json.dumps(stored))
    resumed = ch06_guided_edit.run_sweep(out, 1, models, strengths=(0.0, 100.0), backgrounds=backgrounds, cfg=cfg, progress=False)
    assert resumed["batches"] == table["batches"] and resumed["accuracy"] == {"a classifier": 0.9}


def test_chapter06_settings_are_the_committed_sweeps_choice():
    """TABLE_EDIT's lambda and background weights are what choose_setting picks from the sweep the
    repository ships (seed 603 only), and the sweep is complete."""

    table = ch06_guided_edit.read_results("sweep")
    n_batches = len(table["strengths"]) * len(table["backgrounds"]) * len(table["edit_types"])
    assert len(table["batches"]) == n_batches and table["seed"] == ch06_guided_edit.SWEEP_SEED
    strength, (mse, pd_weight) = ch06_guided_edit.choose_setting(table)
    assert (ch06_guided_edit.TABLE_EDIT.strength, ch06_guided_edit.TABLE_EDIT.mse_weight, ch06_guided_edit.TABLE_EDIT.perceptual_weight) == (strength, mse, pd_weight)
    assert ch06_guided_edit.TABLE_EDIT.background and table["config"]["depth"] == ch06_guided_edit.TABLE_EDIT.depth


def test_style_and_extra_tasks_are_graded_by_the_style_head_and_the_extras_judge(tiny_profile):
    from fashionlab.zoo import loaders

    tasks = edits.tasks_for(730, 6, "extra", "pocket") + edits.tasks_for(730, 6, "style", "sketch")
    assert all(t.value == "pocket" and "pocket" not in t.source.extras for t in tasks[:6])
    assert all(t.value == "sketch" and t.source.style == "photo" for t in tasks[6:])
    mixed = edits.make_tasks(731, 3, ("style", "extra"))
    assert [t.attribute for t in mixed] == ["style"] * 3 + ["extra"] * 3
    oracle, judge = loaders.load("garments-oracle", device="cpu"), loaders.load("garments-extras-judge", device="cpu")
    perceptual = metrics.OraclePerceptual(oracle)
    for chunk in (tasks[:6], tasks[6:]):
        batch = edits.render_tasks(chunk)
        ideal = garments.render_batch([t.target for t in chunk])
        assert edits.score_edits(batch, ideal, oracle, perceptual, judge)["success"].mean() >= 5 / 6
        assert edits.score_edits(batch, batch.images, oracle, perceptual, judge)["success"].mean() <= 1 / 6
    with pytest.raises(ValueError, match="extras judge"):
        edits.score_edits(edits.render_tasks(tasks[:2]), garments.render_batch([t.target for t in tasks[:2]]),
                          oracle, perceptual)
    with pytest.raises(ValueError, match="attribute must be one of"):
        edits.tasks_for(730, 2, "mood", "happy")
