"""The parts of a latent text-to-image model, built as Stable Diffusion's own classes.

Chapter: "Stable Diffusion and LoRA" (``notebooks/08_stable_diffusion_lora.py``); the zoo
assembles them into a ``StableDiffusionPipeline`` (:func:`fashionlab.zoo.loaders.load_sd`).

==================  ==========================================================================
part                tiny profile (our weights)
==================  ==========================================================================
VAE                 ``AutoencoderKL``: 64 px RGB <-> 16 x 16 x 4 latents (:func:`build_vae`)
text encoder        ``CLIPTextModel`` converted from ``garments-clip-s``'s open_clip text tower
                    (:func:`text_encoder_from_clip`), frozen as in Stable Diffusion
tokenizer           ``CLIPTokenizer`` built offline from open_clip's BPE (:func:`clip_tokenizer`):
                    open_clip's ids up to the end-of-text token, padded with it as in SD 1.x
UNet                ``UNet2DConditionModel`` on the latents, cross-attending to the text encoder's
                    last hidden states (:func:`build_cond_unet`)
==================  ==========================================================================

Stable Diffusion 1.x has the same four parts at 512 px (64 x 64 x 4 latents, a 123M-parameter
CLIP ViT-L/14 text encoder, an 860M-parameter UNet).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

PAD_TOKEN = "<|endoftext|>"
"""Stable Diffusion 1.x's tokenizer pads with the end-of-text token (open_clip pads with id 0, the
BPE symbol ``!``; a causal text tower's pooled feature is the same either way)."""


def build_vae(**kwargs):
    """An ``AutoencoderKL`` from keyword arguments (a recipe's ``vae`` dict)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**kwargs)


def build_cond_unet(**kwargs):
    """A ``UNet2DConditionModel`` from keyword arguments (a recipe's ``unet`` dict)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**kwargs)


def _bpe_vocab(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """open_clip's ``SimpleTokenizer`` vocabulary and merges, rebuilt from its BPE file (the same
    construction, so the ids agree)."""
    from open_clip.tokenizer import bytes_to_unicode

    merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [v + "</w>" for v in byte_symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def clip_tokenizer(folder: str | Path, context_length: int = 32):
    """Write ``vocab.json`` and ``merges.txt`` of open_clip's BPE into ``folder`` and return a
    transformers ``CLIPTokenizer`` on them (offline). Its ids equal open_clip's up to the end-of-text
    token; it pads with that token to ``context_length``, as Stable Diffusion 1.x's tokenizer does."""
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _bpe_vocab(Path(default_bpe()))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=PAD_TOKEN,
                         model_max_length=context_length)


def text_encoder_from_clip(clip_model: torch.nn.Module, with_projection: bool = False):
    """Convert an open_clip ``CLIP``'s text tower into a transformers ``CLIPTextModel`` (or
    ``CLIPTextModelWithProjection``, whose ``text_embeds`` equal open_clip's ``encode_text``).

    Both are pre-LayerNorm transformers with a causal mask and a final LayerNorm; open_clip packs
    q, k, v in one ``in_proj`` and stores the projection as a matrix (x @ P), transformers keeps
    separate linears (W x). The pooled token is the end-of-text token, the highest id in both."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    blocks = clip_model.transformer.resblocks
    width = clip_model.positional_embedding.shape[1]
    gelu = blocks[0].mlp.gelu
    if not isinstance(gelu, torch.nn.GELU):
        raise ValueError(f"only open_clip towers with nn.GELU convert; this one uses {type(gelu).__name__}")
    config = CLIPTextConfig(
        vocab_size=clip_model.token_embedding.num_embeddings, hidden_size=width,
        intermediate_size=blocks[0].mlp.c_fc.out_features, num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads, max_position_embeddings=clip_model.positional_embedding.shape[0],
        hidden_act="gelu", layer_norm_eps=clip_model.ln_final.eps, projection_dim=clip_model.text_projection.shape[1],
        bos_token_id=49406, eos_token_id=2, pad_token_id=0)  # eos id 2: transformers then pools at the argmax id
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    state: dict[str, torch.Tensor] = {
        "embeddings.token_embedding.weight": clip_model.token_embedding.weight,
        "embeddings.position_embedding.weight": clip_model.positional_embedding,
        "final_layer_norm.weight": clip_model.ln_final.weight,
        "final_layer_norm.bias": clip_model.ln_final.bias,
    }
    for i, block in enumerate(blocks):
        prefix = f"encoder.layers.{i}."
        q, k, v = block.attn.in_proj_weight.chunk(3)
        qb, kb, vb = block.attn.in_proj_bias.chunk(3)
        state.update({
            prefix + "self_attn.q_proj.weight": q, prefix + "self_attn.q_proj.bias": qb,
            prefix + "self_attn.k_proj.weight": k, prefix + "self_attn.k_proj.bias": kb,
            prefix + "self_attn.v_proj.weight": v, prefix + "self_attn.v_proj.bias": vb,
            prefix + "self_attn.out_proj.weight": block.attn.out_proj.weight,
            prefix + "self_attn.out_proj.bias": block.attn.out_proj.bias,
            prefix + "layer_norm1.weight": block.ln_1.weight, prefix + "layer_norm1.bias": block.ln_1.bias,
            prefix + "layer_norm2.weight": block.ln_2.weight, prefix + "layer_norm2.bias": block.ln_2.bias,
            prefix + "mlp.fc1.weight": block.mlp.c_fc.weight, prefix + "mlp.fc1.bias": block.mlp.c_fc.bias,
            prefix + "mlp.fc2.weight": block.mlp.c_proj.weight, prefix + "mlp.fc2.bias": block.mlp.c_proj.bias,
        })
    state = {k: v.detach().clone().float() for k, v in state.items()}
    tower = getattr(model, "text_model", model)  # transformers 5: CLIPTextModel is the tower itself
    missing, unexpected = tower.load_state_dict(state, strict=False)
    if with_projection:
        model.text_projection.weight.data.copy_(clip_model.text_projection.detach().T)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"text tower conversion left missing {missing} / unexpected {unexpected}")
    return model.eval().requires_grad_(False)
