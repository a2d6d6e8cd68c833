"""AttributeNet: a ViT backbone with CoCa-style attention pooling, one query per attribute.

Chapter: "Taming a ViT for multi-attribute guidance" (paper 000, §3.2, eq. 6, Tables 2-4, Fig. 6);
its logits and attention maps guide the edits of chapter 06 (Procedure 1).

=================  ==========================================================================
code               paper 000
=================  ==========================================================================
``queries``        the |A| learned attribute tokens of the attention-pooling layer (8 here)
``pool``           one cross-attention layer: queries attend to the ViT's patch tokens; LayerNorm
                   on queries and tokens, no residual, no MLP (CoCa's attentional pooler)
``heads[a]``       the linear projection of attribute token a to its C^(a) classes
``attention[a]``   the cross-attention map of token a, averaged over heads, on the patch grid
=================  ==========================================================================

Fine-tuning strategies (000 Table 2): ``attnpool`` trains only the pooler and heads; ``lastK``
also unfreezes the last K transformer blocks; ``e2e`` trains everything.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from ..data.garments import ATTRIBUTES, NUM_CLASSES
from .clip import visual_pixels

STRATEGY_PATTERN = re.compile(r"^(attnpool|e2e|last(\d+))$")


class AttentionPooler(nn.Module):
    """Cross-attention from one learned query per attribute to the patch tokens."""

    def __init__(self, width: int, num_queries: int, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.queries = nn.Parameter(torch.randn(num_queries, width) * width**-0.5)
        self.ln_q = nn.LayerNorm(width)
        self.ln_k = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, W) -> pooled (B, Q, W) and attention weights (B, heads, Q, N)."""
        kv = self.ln_k(tokens)
        q = self.ln_q(self.queries).unsqueeze(0).expand(tokens.shape[0], -1, -1)  # (B, Q, W)
        pooled, weights = self.attn(q, kv, kv, need_weights=True, average_attn_weights=False)
        return pooled, weights


class AttributeNet(nn.Module):
    """ViT patch tokens -> attention pooling -> one linear classifier per attribute.

    ``backbone`` is an open_clip ``VisionTransformer`` (the tiny CLIP's image tower, or one of the
    same shape); its patch tokens are read with ``output_tokens``. ``attributes`` and
    ``num_classes`` default to the Garments attributes; the ``full`` profile's catalogue classifier
    passes the catalogue's (:func:`fashionlab.data.catalog.catalog_labels`).
    """

    def __init__(self, backbone: nn.Module, heads: int = 4, attributes: tuple[str, ...] = ATTRIBUTES,
                 backbone_init: str = "pretrained", num_classes: dict[str, int] | None = None) -> None:
        super().__init__()
        num_classes = NUM_CLASSES if num_classes is None else num_classes
        missing = [a for a in attributes if a not in num_classes]
        if missing:
            raise ValueError(f"num_classes lacks the attributes {missing}")
        if any(not isinstance(num_classes[a], int) or num_classes[a] < 2 for a in attributes):
            raise ValueError(f"every attribute needs at least 2 classes, got {dict(num_classes)}")
        self.backbone = backbone
        self.backbone_init = backbone_init
        """Where the backbone's weights came from (``random`` trains it at the full learning rate)."""
        self.attributes = tuple(attributes)
        width = backbone.transformer.width
        self.pool = AttentionPooler(width, len(attributes), heads)
        self.heads = nn.ModuleDict({a: nn.Linear(width, num_classes[a]) for a in attributes})

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> the CLIP-normalised input of the backbone
        (differentiable, so guidance gradients reach the image)."""
        return visual_pixels(self.backbone, images)

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        previous = self.backbone.output_tokens
        self.backbone.output_tokens = True  # open_clip's switch; restored below
        try:
            _, tokens = self.backbone(pixels)
        finally:
            self.backbone.output_tokens = previous
        return tokens  # (B, N, W)

    def forward(self, pixels: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """CLIP-normalised pixels (B, 3, S, S) -> (logits per attribute (B, C_a),
        attention map per attribute (B, g, g) on the patch grid, averaged over heads)."""
        return self.forward_tokens(self.patch_tokens(pixels))

    def forward_tokens(self, tokens: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The pooler and heads on given patch tokens (B, N, W); see :meth:`forward`. Training
        with a frozen backbone computes the tokens once and calls this."""
        pooled, weights = self.pool(tokens)  # (B, Q, W), (B, heads, Q, N)
        grid = int(math.isqrt(tokens.shape[1]))
        if grid * grid != tokens.shape[1]:
            raise ValueError(f"expected a square patch grid, got {tokens.shape[1]} tokens")
        maps = weights.mean(dim=1).reshape(tokens.shape[0], len(self.attributes), grid, grid)  # (B, Q, g, g)
        logits = {a: self.heads[a](pooled[:, k]) for k, a in enumerate(self.attributes)}
        attention = {a: maps[:, k] for k, a in enumerate(self.attributes)}
        return logits, attention


def attrnet_for(clip_name: str = "garments-clip-s", heads: int = 4) -> AttributeNet:
    """An AttributeNet on a freshly initialised image tower of the open_clip model ``clip_name``
    (the shape a shipped ``garments-attrnet`` is loaded into)."""
    from .clip import create_clip

    return AttributeNet(create_clip(clip_name).model.visual, heads=heads, backbone_init="random")


def apply_strategy(model: AttributeNet, strategy: str) -> list[nn.Parameter]:
    """Freeze the backbone as ``strategy`` says (``attnpool``, ``lastK``, ``e2e``); returns the
    trainable parameters. The pooler and heads always train."""
    match = STRATEGY_PATTERN.match(strategy)
    if match is None:
        raise ValueError(f"strategy must be 'attnpool', 'e2e' or 'lastK' (e.g. 'last2'), got {strategy!r}")
    blocks = model.backbone.transformer.resblocks
    for p in model.backbone.parameters():
        p.requires_grad_(strategy == "e2e")
    if match.group(2) is not None:
        k = int(match.group(2))
        if not 1 <= k <= len(blocks):
            raise ValueError(f"lastK needs 1 <= K <= {len(blocks)} blocks, got K={k}")
        for block in blocks[len(blocks) - k:]:
            for p in block.parameters():
                p.requires_grad_(True)
        for p in model.backbone.ln_post.parameters():
            p.requires_grad_(True)
    for module in (model.pool, model.heads):
        for p in module.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]
