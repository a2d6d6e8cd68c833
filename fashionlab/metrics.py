"""Metrics on images in [-1, 1].

Chapters: "Diffusion in one notebook" (PSNR; the crude foreground check of ``garments-ddpm-64``),
"CLIP for garments" (CLIP score) and "How we measure an edit" (perceptual distance, FID/KID with
bootstrap intervals, and the edit metrics: success, consistency, logit change, preservation).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .data.transforms import check_images


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak-to-peak range 2)."""
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-12))


def foreground_mask(images: torch.Tensor, background_rgb: tuple[int, int, int], tolerance: float = 12.0) -> torch.Tensor:
    """(B, H, W) bool: pixels whose colour differs from ``background_rgb`` (0-255) by more than
    ``tolerance`` in some channel."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    rgb = (images.float().clamp(-1, 1) + 1) * 127.5
    bg = torch.tensor(background_rgb, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - bg).abs().amax(dim=1) > tolerance


def connected_components(mask: torch.Tensor) -> list[torch.Tensor]:
    """8-connected components of each (H, W) mask in a (B, H, W) batch; returns one tensor of
    component sizes per image (largest first)."""
    if mask.dim() != 3:
        raise ValueError(f"mask must be (B, H, W), got {tuple(mask.shape)}")
    b, h, w = mask.shape
    fg = mask.float().unsqueeze(1)  # (B, 1, H, W)
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w).expand(b, 1, h, w) * fg
    while True:  # propagate the largest label through each component
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * fg
        if torch.equal(grown, labels):
            break
        labels = grown
    sizes = []
    for k in range(b):
        _, counts = torch.unique(labels[k][labels[k] > 0], return_counts=True)
        sizes.append(counts.sort(descending=True).values)
    return sizes


def single_region_rate(images: torch.Tensor, background_rgb: tuple[int, int, int], tolerance: float = 12.0,
                       min_pixels: int = 4, coverage: tuple[float, float] = (0.05, 0.8)) -> tuple[float, torch.Tensor]:
    """Share of images that show one garment on a clean background: the foreground (pixels off the
    background colour by more than ``tolerance``) is one connected region (components smaller than
    ``min_pixels`` are ignored as specks) and covers a share of the image within ``coverage`` (so
    that pure noise, which is "one region" everywhere, fails). Returns (rate, per-image bool)."""
    fg = foreground_mask(images, background_rgb, tolerance)
    share = fg.float().flatten(1).mean(dim=1)
    sizes = connected_components(fg)
    ok = torch.tensor([int((s >= min_pixels).sum()) == 1 for s in sizes])
    ok &= (share >= coverage[0]) & (share <= coverage[1])
    return float(ok.float().mean()), ok


def clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """CLIP score as ZIP reports it: 100 * cos(E_I(x), E_T(y)), per image."""
    return 100 * F.cosine_similarity(image_features, text_features, dim=-1)


# ----------------------------------------------------------------------------------------
# Perceptual distance: the LPIPS formula on a backbone we ship (tiny) or LPIPS-Alex (full)
# ----------------------------------------------------------------------------------------
def _check_pair(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    check_images(x.detach(), names[0])
    check_images(y.detach(), names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")


class PerceptualDistance(torch.nn.Module):
    """A perceptual distance: subclasses give :meth:`distance_map` (B, 1, H, W); the distance of
    each pair is its spatial mean (= the LPIPS sum of per-layer spatial averages)."""

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) distances: the spatial mean of :meth:`distance_map`."""
        return self.distance_map(x, y).mean(dim=(1, 2, 3))


class OraclePerceptual(PerceptualDistance):
    """The LPIPS formula (Zhang et al., 2018, eq. 1) on the oracle's stage features, with unit weights:

        d(x, y) = sum_l mean_hw || n(f_l(x)) - n(f_l(y)) ||^2,  n = unit-normalise over channels.

    It reuses the lpips package's ``normalize_tensor``. Unlike LPIPS it has no learned per-channel
    weights and is **not calibrated against human judgements**. It does not ignore pixel noise:
    relative to a garment swap it weighs noise of 0.15 about 2.6 times more than L2 does
    (chapter 04, section 1).
    """

    def __init__(self, oracle: torch.nn.Module) -> None:
        super().__init__()
        self.oracle = oracle.eval()
        for p in self.oracle.parameters():
            p.requires_grad_(False)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W): the per-position squared feature distance, summed over layers (each upsampled)."""
        from lpips import normalize_tensor

        _check_pair(x, y)
        total = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device)
        for fx, fy in zip(self.oracle.stage_features(x), self.oracle.stage_features(y)):
            d = (normalize_tensor(fx) - normalize_tensor(fy)).pow(2).sum(dim=1, keepdim=True)
            total = total + F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return total


class ViTPerceptual(PerceptualDistance):
    """The LPIPS formula (unit weights, as :class:`OraclePerceptual`) on the patch tokens of an
    open_clip ViT after each transformer block:

        d(x, y) = sum_blocks mean_patches || n(tokens(x)) - n(tokens(y)) ||^2.

    LPIPS measures with an ImageNet network; on Garments the analogue is the category ViT
    ``garments-vit-sup-s`` (chapter 05). The editing chapters use it inside their background
    losses, so that the oracle, which grades the edits, never guides them.
    ``preprocess`` maps images in [-1, 1] to the ViT's input (differentiably). ``visual`` is
    frozen (eval mode, no gradients): pass a copy you do not train."""

    def __init__(self, visual: torch.nn.Module, preprocess, blocks: Sequence[int] | None = None) -> None:
        super().__init__()
        self.visual = visual.eval()
        for p in self.visual.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        n = len(visual.transformer.resblocks)
        self.blocks = tuple(range(n)) if blocks is None else tuple(blocks)
        if not self.blocks or any(not 0 <= b < n for b in self.blocks):
            raise ValueError(f"blocks must be indices in [0, {n}), got {blocks}")

    def _tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        transformer = self.visual.transformer
        x = self.visual._embeds(self.preprocess(images))  # (B, 1 + N, W)
        x = x if transformer.batch_first else x.transpose(0, 1)
        out = []
        for k, block in enumerate(transformer.resblocks[:max(self.blocks) + 1]):
            x = block(x)
            if k in self.blocks:
                out.append(x if transformer.batch_first else x.transpose(0, 1))
        return [t[:, 1:] for t in out]  # drop the class token: (B, N, W)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W): the per-patch squared feature distance, summed over blocks, upsampled."""
        from lpips import normalize_tensor

        _check_pair(x, y)
        total = 0
        for tx, ty in zip(self._tokens(x), self._tokens(y)):
            d = (normalize_tensor(tx.transpose(1, 2)) - normalize_tensor(ty.transpose(1, 2))).pow(2).sum(dim=1)
            grid = int(round(d.shape[1] ** 0.5))
            total = total + d.view(-1, 1, grid, grid)
        return F.interpolate(total, size=x.shape[-2:], mode="bilinear", align_corners=False)


class LPIPSAlex(PerceptualDistance):
    """``lpips.LPIPS(net="alex")`` behind the same interface (``full`` profile: needs AlexNet weights
    from the internet). ``random_backbone=True`` builds it offline with random weights (tests)."""

    def __init__(self, random_backbone: bool = False) -> None:
        super().__init__()
        import lpips

        if not random_backbone:
            from . import config

            from torchvision.models import AlexNet_Weights

            url = AlexNet_Weights.IMAGENET1K_V1.url
            config.require_hub("LPIPS-Alex (its AlexNet weights are downloaded)", url, config.torch_hub_cached(url))
        self.net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=random_backbone, spatial=True, verbose=False).eval()

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W): LPIPS's per-layer maps upsampled to the image and summed."""
        _check_pair(x, y)
        return self.net(x, y, normalize=False)


# ----------------------------------------------------------------------------------------
# FID and KID on chosen features, with bootstrap confidence intervals
# ----------------------------------------------------------------------------------------
def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """FID formula (Heusel et al., 2017): ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric positive semi-definite."""
    _check_features(feats_a, feats_b)
    if feats_a.shape[0] < 2 or feats_b.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples per set")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def mmd2_unbiased(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """The unbiased MMD^2 of KID (Binkowski et al., 2018) over all rows of both sets, with kernel
    k(x, y) = (x.y / d + 1)^3: the mean of k within each set off the diagonal, minus twice the mean
    across. A U-statistic: unbiased whatever the sizes, so it can fall below 0."""
    _check_features(feats_a, feats_b)
    n, m = len(feats_a), len(feats_b)
    if n < 2 or m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n} and {m}")
    d = feats_a.shape[1]
    a, b = feats_a.double(), feats_b.double()
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int = 10,
                              subset_size: int | None = None, generator: torch.Generator | None = None) -> float:
    """KID (Binkowski et al., 2018) as torch-fidelity computes it: :func:`mmd2_unbiased` averaged
    over ``subsets`` random subsets of ``subset_size`` rows of each set (default: the smaller set,
    at most 1000). For a few hundred rows or fewer, :func:`mmd2_unbiased` on all of them is the
    same estimate without the subsets' randomness."""
    _check_features(feats_a, feats_b)
    m = subset_size or min(len(feats_a), len(feats_b), 1000)
    if m < 2 or m > min(len(feats_a), len(feats_b)):
        raise ValueError(f"subset_size must be in [2, {min(len(feats_a), len(feats_b))}], got {m}")
    values = [mmd2_unbiased(feats_a[torch.randperm(len(feats_a), generator=generator)[:m]],
                            feats_b[torch.randperm(len(feats_b), generator=generator)[:m]]) for _ in range(subsets)]
    return float(sum(values) / len(values))


def _check_features(feats_a: torch.Tensor, feats_b: torch.Tensor) -> None:
    if feats_a.dim() != 2 or feats_b.dim() != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(feats_a.shape)}, {tuple(feats_b.shape)}")


def inception_score(probs: torch.Tensor, splits: int = 1) -> float:
    """Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))) of class probabilities
    ``probs`` (N, K), averaged over ``splits`` equal parts as the original code does. Its classes
    are Inception-v3's under ``full``; in ``tiny`` they are the oracle's garment categories, whose
    marginal p(y) is set by the source garments an edit starts from, so IS mostly measures how
    confidently the categories are told apart, not the quality of an edit. Between 1 and K."""
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, K) class probabilities with K >= 2, got {tuple(probs.shape)}")
    if (probs < 0).any() or not torch.allclose(probs.sum(dim=1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-4):
        raise ValueError("probs must be non-negative with rows summing to 1 (a softmax)")
    if not 1 <= splits <= len(probs):
        raise ValueError(f"splits must be in [1, {len(probs)}], got {splits}")
    p = probs.double().clamp(min=1e-12)
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(dim=0, keepdim=True)
        scores.append(float((part * (part.log() - marginal.log())).sum(dim=1).mean().exp()))
    return float(sum(scores) / len(scores))


def bootstrap_ci(statistic, *samples: torch.Tensor, rounds: int = 200, level: float = 0.95,
                 generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """(value, low, high): ``statistic(*samples)`` and a percentile bootstrap interval, resampling
    each sample's rows with replacement independently. For means and proportions. Not for FID,
    KID or IS: duplicated rows bias them (KID's within-set kernel sums grow, FID's covariances
    shrink), so their bootstrap values sit above the estimate; use :func:`jackknife_ci`."""
    value = float(statistic(*samples))
    stats = []
    for _ in range(rounds):
        resampled = [s[torch.randint(0, len(s), (len(s),), generator=generator)] for s in samples]
        stats.append(float(statistic(*resampled)))
    stats_t = torch.tensor(stats)
    low, high = torch.quantile(stats_t, (1 - level) / 2).item(), torch.quantile(stats_t, 1 - (1 - level) / 2).item()
    return value, low, high


def jackknife_ci(statistic, *samples: torch.Tensor, paired: bool = False, groups: int = 50,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): ``statistic(*samples)`` and a delete-a-group jackknife interval,
    value -/+ t_{g-1} * se, for statistics that duplicated rows would bias (FID, KID, IS).

    Each sample's rows are split into at most ``groups`` contiguous groups; the statistic is
    recomputed with one group left out, so no row ever appears twice. se^2 = (g - 1) / g *
    sum_k (theta_(k) - mean)^2 (Efron and Tibshirani, 1993, ch. 11). ``paired=True``: the samples
    are row-aligned (the same garments on both sides) and the same group leaves all of them;
    otherwise the samples are independent, each is left out of in turn and the variances add. The
    interval is centred on the estimate, so it always contains it; it says how far the estimate
    would move with other images, not how far a biased estimator (FID at small n) is from its
    limit."""
    from scipy.stats import t as student_t

    if not samples:
        raise ValueError("jackknife_ci needs at least one sample")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if paired and len({len(s) for s in samples}) != 1:
        raise ValueError(f"paired samples must have the same length, got {[len(s) for s in samples]}")
    value = float(statistic(*samples))
    variance, dof = 0.0, None
    for which in ([None] if paired else range(len(samples))):
        n = len(samples[0] if which is None else samples[which])
        g = min(groups, n)
        if g < 2:
            raise ValueError(f"jackknife_ci needs at least 2 rows per sample, got {n}")
        bounds = torch.linspace(0, n, g + 1).round().long().tolist()
        left_out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            keep = torch.cat([torch.arange(0, lo), torch.arange(hi, n)])
            left_out.append(float(statistic(*[s[keep] if which is None or k == which else s
                                               for k, s in enumerate(samples)])))
        values = torch.tensor(left_out, dtype=torch.float64)
        variance += float((g - 1) / g * (values - values.mean()).pow(2).sum())
        dof = g - 1 if dof is None else min(dof, g - 1)
    half = float(student_t.ppf(0.5 + level / 2, dof)) * variance ** 0.5
    return value, value - half, value + half


def mean_ci(values: torch.Tensor, rounds: int = 1000, level: float = 0.95,
            generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """Mean of per-image values with a percentile bootstrap interval over images."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if len(values) == 0:
        raise ValueError("mean_ci needs at least one value")
    return bootstrap_ci(lambda v: v.mean(), values, rounds=rounds, level=level, generator=generator)


# ----------------------------------------------------------------------------------------
# Edit metrics with ground truth
# ----------------------------------------------------------------------------------------
def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al., 2017): sum over confidence bins of |accuracy - confidence| weighted by bin size."""
    confidence, pred = probs.max(dim=1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if bool(inside.any()):
            ece += float(inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return ece


def predicted_attributes(logits: dict[str, torch.Tensor], attributes: tuple[str, ...]) -> torch.Tensor:
    """(B, A) class indices predicted by an attribute classifier's logits."""
    return torch.stack([logits[a].argmax(dim=1) for a in attributes], dim=1)


def attribute_success(predicted: torch.Tensor, targets: dict[str, int], attributes: tuple[str, ...]) -> torch.Tensor:
    """(B,) bool: every target attribute has its target class (``targets``: attribute -> class index)."""
    for name in targets:
        if name not in attributes:
            raise ValueError(f"unknown target attribute {name!r}; attributes are {attributes}")
    ok = torch.ones(predicted.shape[0], dtype=torch.bool)
    for name, value in targets.items():
        ok &= predicted[:, attributes.index(name)] == value
    return ok


def attribute_consistency(predicted: torch.Tensor, source_labels: torch.Tensor, edited_attributes: Sequence[str],
                          attributes: tuple[str, ...]) -> torch.Tensor:
    """(B,) share of the *other* attributes (those not edited, applicable to the source) whose
    predicted class on the edited image equals the source's label: paper 000's per-image
    consistency. The thesis's Table 1 is per *attribute*, over images: :func:`unchanged_share`."""
    if predicted.shape != source_labels.shape:
        raise ValueError(f"predicted and source_labels must match, got {tuple(predicted.shape)}, {tuple(source_labels.shape)}")
    keep = torch.tensor([a not in edited_attributes for a in attributes])
    valid = (source_labels >= 0) & keep
    same = (predicted == source_labels) & valid
    return same.sum(dim=1).float() / valid.sum(dim=1).clamp(min=1).float()


def unchanged_share(predicted_source: torch.Tensor, predicted_edited: torch.Tensor, valid: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """(A,) per attribute (column), the share of images whose predicted class did *not* change
    from source to edit: the thesis's Table 1 "accuracy", target attribute included (low is good
    for the target, high for the rest). ``valid`` (B, A) bool leaves out inapplicable entries;
    an attribute with no valid image gets NaN."""
    if predicted_source.shape != predicted_edited.shape or predicted_source.dim() != 2:
        raise ValueError(f"predicted_source and predicted_edited must be matching (B, A) tensors, got "
                         f"{tuple(predicted_source.shape)}, {tuple(predicted_edited.shape)}")
    valid = torch.ones_like(predicted_source, dtype=torch.bool) if valid is None else valid
    if valid.shape != predicted_source.shape:
        raise ValueError(f"valid must be (B, A) like the predictions, got {tuple(valid.shape)}")
    same = ((predicted_source == predicted_edited) & valid).sum(dim=0).double()
    count = valid.sum(dim=0).double()
    return torch.where(count > 0, same / count.clamp(min=1), torch.full_like(same, float("nan")))


def noise_statistics(x: torch.Tensor) -> dict[str, float]:
    """How Gaussian a latent x_T (B, C, H, W) looks (thesis appendix B): its std, excess kurtosis
    (0 for a Gaussian) and the mean correlation of horizontally and vertically adjacent values
    (0 for white noise), pooled over the batch."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    x = x.double()
    centred = x - x.mean()
    std = centred.std()
    kurtosis = (centred.pow(4).mean() / centred.pow(2).mean().pow(2)) - 3

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    lag = (corr(x[..., :, 1:], x[..., :, :-1]) + corr(x[..., 1:, :], x[..., :-1, :])) / 2
    return {"std": float(std), "excess_kurtosis": float(kurtosis), "neighbour_correlation": lag}


def target_logit_change(logits_source: dict[str, torch.Tensor], logits_edited: dict[str, torch.Tensor],
                        attribute: str, value: int) -> torch.Tensor:
    """(B,) change of the logit of class ``value`` of ``attribute`` from source to edit (thesis Table 2)."""
    return logits_edited[attribute][:, value] - logits_source[attribute][:, value]


def preservation(source: torch.Tensor, edited: torch.Tensor, region: torch.Tensor,
                 perceptual: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Change *outside* the ground-truth edit ``region`` (B, H, W) bool: mean squared error and, with
    ``perceptual``, the mean of its distance map over the outside pixels. Per image.

    ``l2_outside`` ignores a change inside the region exactly. ``perceptual_outside`` does not: the
    distance map comes from features with a wide receptive field, so a large change inside the
    region raises it near the region's border (with tests/test_edit_metrics.py's untrained oracle,
    inverting a t-shirt's sleeves scores about as much as blacking out an 8 x 8 corner outside them)."""
    _check_pair(source, edited, ("source", "edited"))
    if region.shape != (source.shape[0], *source.shape[-2:]) or region.dtype != torch.bool:
        raise ValueError(f"region must be a bool (B, H, W) mask of shape {(source.shape[0], *source.shape[-2:])}, "
                         f"got {region.dtype} {tuple(region.shape)}")
    outside = (~region).unsqueeze(1).float()  # (B, 1, H, W)
    count = outside.sum(dim=(1, 2, 3)).clamp(min=1)
    out = {"l2_outside": ((source - edited).pow(2).mean(dim=1, keepdim=True) * outside).sum(dim=(1, 2, 3)) / count}
    if perceptual is not None:
        dmap = perceptual.distance_map(source, edited)
        out["perceptual_outside"] = (dmap * outside).sum(dim=(1, 2, 3)) / count
    return out


def oracle_features(oracle: torch.nn.Module):
    """FID/KID feature extractor of the ``tiny`` profile: the oracle's pooled last-stage features."""
    oracle = oracle.eval()

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        return oracle.penultimate(images)

    return extract


def inception_features(random_weights: bool = False):
    """FID/KID feature extractor of the ``full`` profile: torchvision's Inception-v3 pool features
    (2048-d) on images resized to 299 px, on whatever device the images are (a CUDA batch moves the
    network to CUDA once). ``random_weights=True`` builds it offline (tests)."""
    from torchvision.models import Inception_V3_Weights, inception_v3

    if random_weights:
        net = inception_v3(weights=None, aux_logits=False, init_weights=True)
    else:
        from . import config

        url = Inception_V3_Weights.IMAGENET1K_V1.url
        config.require_hub("Inception-v3 weights for FID", url, config.torch_hub_cached(url))
        net = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
    net.fc = torch.nn.Identity()
    net = net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        """Features of ``images`` (B, 3, H, W) in [-1, 1], computed on the images' device (the
        network follows them there), returned on that device in fp32."""
        nonlocal net
        if next(net.parameters()).device != images.device:
            net = net.to(images.device)
        x = F.interpolate((images.float() + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        return net((x - mean.to(x.device)) / std.to(x.device))

    return extract
