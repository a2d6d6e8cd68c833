import pytest
import torch

from fashionlab.data import garments as G
from fashionlab.losses import masked_attribute_ce
from fashionlab.models import clip
from fashionlab.models.attrnet import AttributeNet, apply_strategy


@pytest.fixture()
def net():
    torch.manual_seed(0)
    return AttributeNet(clip.create_clip("garments-clip-s").model.visual)


def test_logits_and_attention_maps(net):
    logits, maps = net(torch.randn(2, 3, 64, 64))
    assert {a: v.shape for a, v in logits.items()} == {a: (2, n) for a, n in G.NUM_CLASSES.items()}
    assert all(m.shape == (2, 8, 8) for m in maps.values())  # 64 px / patch 8 -> 8 x 8 grid
    for m in maps.values():  # attention rows are distributions over the patches
        torch.testing.assert_close(m.sum(dim=(1, 2)), torch.ones(2))
    assert net.backbone.output_tokens is False


def test_masked_ce_trains_the_heads(net):
    apply_strategy(net, "attnpool")
    labels = torch.stack([torch.from_numpy(G.spec_for(0, i).attribute_vector()) for i in range(4)])
    logits, _ = net(torch.randn(4, 3, 64, 64))
    loss = masked_attribute_ce(logits, labels, G.ATTRIBUTES)
    loss.backward()
    assert net.heads["colour"].weight.grad is not None
    assert net.backbone.conv1.weight.grad is None


@pytest.mark.parametrize("strategy,trainable_blocks", [("attnpool", 0), ("last2", 2), ("last4", 4), ("e2e", 6)])
def test_strategies_freeze_the_right_blocks(net, strategy, trainable_blocks):
    params = apply_strategy(net, strategy)
    blocks = net.backbone.transformer.resblocks
    trainable = [all(p.requires_grad for p in b.parameters()) for b in blocks]
    assert sum(trainable) == trainable_blocks and trainable[len(blocks) - trainable_blocks:] == [True] * trainable_blocks
    assert all(p.requires_grad for p in net.pool.parameters()) and len(params) > 0
    assert net.backbone.conv1.weight.requires_grad == (strategy == "e2e")


@pytest.mark.parametrize("bad", ["last0", "last7", "finetune", "lastK"])
def test_bad_strategy(net, bad):
    with pytest.raises(ValueError, match="strategy must be|lastK needs"):
        apply_strategy(net, bad)
