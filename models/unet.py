"""ADM-style class-conditional U-Net (Dhariwal & Nichol 2021), base and super-resolution.

The network predicts ε (or v) from x_t, the training-schedule step t and a class label;
label `num_classes` is the null label of classifier-free guidance. Optionally the
attention blocks also attend to a per-item text context (the paper's class name as a
prompt), and a super-resolution model also sees the upsampled low-res image and its
noise-augmentation level.

Layout is NHWC throughout (XLA's CPU and TPU convolutions prefer it). Named sizes live
in `unet_config(variant)`.
"""
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

_zeros = nn.initializers.zeros


def timestep_embedding(t, dim, max_period=10_000):
  """Sinusoidal embedding of a (B,) array of (possibly fractional) steps → (B, dim)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class GroupNorm(nn.Module):
  """GroupNorm, optionally followed by a FiLM `x·(1 + scale) + shift`, then SiLU.

  Statistics come from per-channel sums over H, W (a reduction XLA vectorises well on
  CPU, unlike flax's reduction over a (…, groups, channels/group) view, which was 3-4x
  slower at 28×28×64), and the normalisation, affine, FiLM and SiLU fold into one
  per-(item, channel) multiply-add over the feature map.
  """
  groups: int
  affine: bool = True
  silu: bool = True
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, film=None):
    b, c = x.shape[0], x.shape[-1]
    groups = math.gcd(self.groups, c)  # Narrow layers fall back to fewer groups.
    xf = x.astype(jnp.float32)
    per_group = lambda s: jnp.mean(s.reshape(b, groups, c // groups), axis=-1)
    mean = per_group(jnp.mean(xf, axis=(1, 2)))
    var = jnp.maximum(per_group(jnp.mean(jnp.square(xf), axis=(1, 2))) - mean ** 2, 0.)
    per_channel = lambda g: jnp.repeat(g, c // groups, axis=-1)
    mul = per_channel(jax.lax.rsqrt(var + self.epsilon))
    add = -per_channel(mean) * mul
    if self.affine:
      gamma = self.param("scale", nn.initializers.ones, (c,))
      beta = self.param("bias", nn.initializers.zeros, (c,))
      mul, add = mul * gamma, add * gamma + beta
    if film is not None:
      scale, shift = film
      mul, add = mul * (1 + scale), add * (1 + scale) + shift
    h = xf * mul[:, None, None] + add[:, None, None]
    return (nn.silu(h) if self.silu else h).astype(x.dtype)


class ResBlock(nn.Module):
  """GN → SiLU → conv → GN·(1 + scale) + shift (FiLM from the embedding) → SiLU → conv."""
  out_channels: int
  dropout: float
  norm_groups: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, emb, train):
    conv = lambda feat, k, **kw: nn.Conv(feat, (k, k), dtype=self.dtype, **kw)
    h = conv(self.out_channels, 3)(GroupNorm(self.norm_groups)(x))
    film = jnp.split(nn.Dense(2 * self.out_channels, dtype=self.dtype)(nn.silu(emb)),
                     2, axis=-1)
    # The FiLM supplies the affine part, so this norm has none of its own.
    h = GroupNorm(self.norm_groups, affine=False)(h, film)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Zero-initialised: every block starts as the identity, as in ADM.
    h = conv(self.out_channels, 3, kernel_init=_zeros)(h)
    if x.shape[-1] != self.out_channels:
      x = conv(self.out_channels, 1)(x)
    return x + h


class AttentionBlock(nn.Module):
  """Multi-head self-attention over pixels; with a context, its tokens join the keys.

  Cross-attention is GLIDE's: the context is projected to extra keys and values that
  every pixel attends to alongside the other pixels (one softmax over both).
  """
  num_heads: int
  norm_groups: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, context=None):
    b, hgt, wid, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"Attention at {hgt}x{wid} has {c} channels, not divisible by "
                       f"num_heads={self.num_heads}; change num_heads or the channels.")
    dense = lambda feat, **kw: nn.Dense(feat, dtype=self.dtype, **kw)
    h = GroupNorm(self.norm_groups, silu=False)(x).reshape(b, hgt * wid, c)
    q, k, v = jnp.split(dense(3 * c)(h), 3, axis=-1)
    if context is not None:
      ck, cv = jnp.split(dense(2 * c)(context.astype(self.dtype)), 2, axis=-1)
      k, v = jnp.concatenate([k, ck], axis=1), jnp.concatenate([v, cv], axis=1)
    heads = lambda a: a.reshape(b, a.shape[1], self.num_heads, c // self.num_heads)
    q, k, v = heads(q), heads(k), heads(v)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(c // self.num_heads)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, hgt * wid, c)
    return x + dense(c, kernel_init=_zeros)(out).reshape(x.shape)


class UNet(nn.Module):
  """ε/v-prediction U-Net. Returns an array shaped like x.

  attention_resolutions are feature-map side lengths (pixels) at which every res
  block is followed by attention; the middle block always has attention.
  conv_resample: 3×3 convolutions do the down- and upsampling (ADM's default); False
  average-pools down and repeats pixels up, with no convolution.
  """
  num_classes: int
  out_channels: int
  base_channels: int
  channel_mult: Sequence[int]
  num_res_blocks: int
  attention_resolutions: Sequence[int]
  num_heads: int
  dropout: float = 0.0
  context_dim: Optional[int] = None
  super_resolution: bool = False
  norm_groups: int = 32
  conv_resample: bool = True
  dtype: jnp.dtype = jnp.float32

  def _check_inputs(self, x, low_res, aug_level, context):
    factor = 2 ** (len(self.channel_mult) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(image_size_error(x.shape[1:3], factor))
    if self.super_resolution and (low_res is None or aug_level is None):
      raise ValueError("This is a super-resolution U-Net: pass low_res (B, h, w, C) and "
                       "aug_level (B,) (0 = no noise augmentation).")
    if not self.super_resolution and low_res is not None:
      raise ValueError("low_res was given to a base (non super-resolution) U-Net; drop "
                       "it, or build the model with super_resolution=True.")
    if (self.context_dim is None) != (context is None):
      raise ValueError(
          f"context_dim={self.context_dim} but context is "
          f"{'missing' if context is None else 'given'}: a model with context_dim "
          "needs a (B, L, context_dim) text context and one without takes none.")
    if context is not None and context.shape[-1] != self.context_dim:
      raise ValueError(f"Context has width {context.shape[-1]}, the model expects "
                       f"context_dim={self.context_dim}.")

  @nn.compact
  def __call__(self, x, t, labels, *, low_res=None, aug_level=None, context=None,
               train=False):
    self._check_inputs(x, low_res, aug_level, context)
    emb_dim = 4 * self.base_channels
    dense = lambda feat, **kw: nn.Dense(feat, dtype=self.dtype, **kw)

    def embed_steps(steps, name):
      h = timestep_embedding(steps, self.base_channels)
      return dense(emb_dim, name=f"{name}_out")(nn.silu(dense(emb_dim, name=name)(h)))

    emb = embed_steps(t, "time_embed")
    emb += nn.Embed(self.num_classes + 1, emb_dim, name="class_embed")(labels)
    if self.super_resolution:
      emb += embed_steps(jnp.asarray(aug_level, jnp.float32) * 1000, "aug_embed")
      up = jax.image.resize(low_res, x.shape[:3] + low_res.shape[3:], "bilinear")
      x = jnp.concatenate([x, up.astype(x.dtype)], axis=-1)

    res_block = lambda ch: ResBlock(ch, self.dropout, self.norm_groups, self.dtype)
    attention = lambda: AttentionBlock(self.num_heads, self.norm_groups, self.dtype)
    conv3 = lambda ch, **kw: nn.Conv(ch, (3, 3), dtype=self.dtype, **kw)

    h = conv3(self.base_channels)(x.astype(self.dtype))
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = res_block(mult * self.base_channels)(h, emb, train)
        if h.shape[1] in self.attention_resolutions:
          h = attention()(h, context)
        skips.append(h)
      if level < len(self.channel_mult) - 1:
        if self.conv_resample:
          h = conv3(h.shape[-1], strides=(2, 2))(h)
        else:
          h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        skips.append(h)

    h = res_block(h.shape[-1])(h, emb, train)
    h = attention()(h, context)
    h = res_block(h.shape[-1])(h, emb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = res_block(mult * self.base_channels)(
            jnp.concatenate([h, skips.pop()], axis=-1), emb, train)
        if h.shape[1] in self.attention_resolutions:
          h = attention()(h, context)
      if level > 0:  # Nearest-neighbour ×2 (a broadcast, no gather), then a conv.
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
        if self.conv_resample:
          h = conv3(h.shape[-1])(h)

    h = GroupNorm(self.norm_groups)(h)
    # Zero output: the untrained model predicts 0 (ADM).
    return conv3(self.out_channels, kernel_init=_zeros)(h).astype(jnp.float32)


def image_size_error(size, factor):
  return (f"Image size {tuple(size)} is not divisible by {factor} = 2**(len(channel_mult)"
          f" - 1), the U-Net's total downsampling; pick an image size that is a "
          f"multiple of {factor} or use fewer channel_mult levels.")


def _config(**kw):
  base = dict(channels=3, dropout=0.0, context_dim=None, super_resolution=False,
              low_res_size=None, norm_groups=32, conv_resample=True, prediction="eps",
              schedule="cosine")
  return ml_collections.ConfigDict({**base, **kw})


# Named sizes. low_res_size is the input side length of a super-resolution stage.
_VARIANTS = {
    # Tests only: compiles in about a second.
    "tiny": lambda: _config(
        image_size=8, channels=3, num_classes=4, base_channels=8, channel_mult=(1, 2),
        num_res_blocks=1, attention_resolutions=(4,), num_heads=2, norm_groups=4),
    "tiny_sr": lambda: _config(
        image_size=16, channels=3, num_classes=4, base_channels=8, channel_mult=(1, 2),
        num_res_blocks=1, attention_resolutions=(), num_heads=2, norm_groups=4,
        conv_resample=False, super_resolution=True, low_res_size=8, prediction="v"),
    # Fashion-MNIST: 28 → 14 → 7 at 32/64/128 channels, attention only at 7. Sized for
    # throughput on a CPU (benchmarks/sampler_bench.py): one res block per level
    # with the width at 7 px, where convolutions are cheap and run near peak, beat
    # (1, 2, 2) × 2 blocks (≈ 208 vs 165 images/s at 60% vs 50% of peak FLOP/s);
    # ADM's conv_resample=False (average-pool down, nearest up) drops the costly
    # resampling convolutions at 28 px. 16 groups keep ≥ 2 channels per group (32
    # would make the 32-channel norms per-channel, instance norms).
    "fashion": lambda: _config(
        image_size=28, channels=1, num_classes=10, base_channels=32,
        channel_mult=(1, 2, 4), num_res_blocks=1, attention_resolutions=(7,),
        num_heads=4, dropout=0.1, norm_groups=16, conv_resample=False),
    # The paper's 64 px base model, ADM ImageNet-64 sizes, text cross-attention.
    "imagenet64": lambda: _config(
        image_size=64, num_classes=1000, base_channels=192, channel_mult=(1, 2, 3, 4),
        num_res_blocks=3, attention_resolutions=(32, 16, 8), num_heads=4, dropout=0.1,
        context_dim=512),
    # ADM's 64 → 256 upsampler sizes.
    "sr256": lambda: _config(
        image_size=256, num_classes=1000, base_channels=192,
        channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
        attention_resolutions=(32, 16, 8), num_heads=4, context_dim=512,
        super_resolution=True, low_res_size=64, schedule="linear"),
    # 256 → 1024: attention (and text) only at the 32 px bottom, as in Imagen's
    # high-resolution stage; full-resolution attention would cost 1024² tokens.
    "sr1024": lambda: _config(
        image_size=1024, num_classes=1000, base_channels=128,
        channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention_resolutions=(32,),
        num_heads=4, context_dim=512, super_resolution=True, low_res_size=256,
        schedule="linear"),
}
VARIANTS = tuple(_VARIANTS)


def unet_config(variant):
  """A fresh ConfigDict of the named size (callers may edit it)."""
  if variant not in _VARIANTS:
    raise ValueError(f"Unknown U-Net variant {variant!r}; choose one of {VARIANTS}.")
  return _VARIANTS[variant]()


def build_unet(cfg):
  """The UNet module a config describes (configs saved before norm_groups or
  conv_resample existed get ADM's defaults)."""
  return UNet(num_classes=cfg.num_classes, out_channels=cfg.channels,
              base_channels=cfg.base_channels, channel_mult=tuple(cfg.channel_mult),
              num_res_blocks=cfg.num_res_blocks,
              attention_resolutions=tuple(cfg.attention_resolutions),
              num_heads=cfg.num_heads, dropout=cfg.dropout,
              context_dim=cfg.context_dim, super_resolution=cfg.super_resolution,
              norm_groups=cfg.get("norm_groups", 32),
              conv_resample=cfg.get("conv_resample", True))
