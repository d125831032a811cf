"""Vision Transformers: ViT-S/16 (Beyer et al. 2022) and DeiT-S/B/L (Touvron et al.).

Both are the ViT of Dosovitskiy et al.: 16x16 patches, pre-LayerNorm encoder blocks
(MHSA and a GELU MLP of 4x width), a final LayerNorm and a linear head. They differ in
the head, as published:
  - ViT-S/16 ("Better plain ViT baselines", big_vision): global average pooling of the
    tokens, fixed 2-D sin-cos position embeddings, a tanh pre-logits layer, and a
    zero-initialised head;
  - DeiT: a class token, learned position embeddings, stochastic depth (drop path).
DeiT's distillation token is left out: it only matters when distilling from a teacher.
DeiT-L is ViT-L/16 trained with the DeiT recipe.
"""
import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from synthfactory.models.classifiers import head

# width, depth, heads, pool, position embedding, pre-logits
_SPECS = {
    "vit_s16": (384, 12, 6, "gap", "sincos2d", True),
    "deit_s": (384, 12, 6, "cls", "learn", False),
    "deit_b": (768, 12, 12, "cls", "learn", False),
    "deit_l": (1024, 24, 16, "cls", "learn", False),
    "vit_tiny": (32, 2, 2, "cls", "learn", False),  # Tests only.
}
NAMES = tuple(_SPECS)
_PATCH = {"vit_tiny": 4}  # Every other variant has 16x16 patches.


def sincos2d(h, w, width, temperature=10_000.0):
  """Fixed 2-D sin-cos position embeddings (1, h·w, width), as in big_vision."""
  if width % 4:
    raise ValueError(f"sincos2d position embeddings need a width divisible by 4, got "
                     f"{width}.")
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
  y, x = np.einsum("m,d->md", y.ravel(), omega), np.einsum("m,d->md", x.ravel(), omega)
  emb = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(emb[None], jnp.float32)


class EncoderBlock(nn.Module):
  heads: int
  drop_path: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, train):
    # Drop path: drops a whole residual branch per example.
    drop = functools.partial(nn.Dropout, self.drop_path, broadcast_dims=(1, 2),
                             deterministic=not train)
    dense_init = dict(kernel_init=nn.initializers.xavier_uniform(),
                      bias_init=nn.initializers.normal(1e-6))
    h = nn.LayerNorm(dtype=self.dtype)(x)
    h = nn.MultiHeadDotProductAttention(
        self.heads, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())(h, h)
    x = x + drop()(h)
    h = nn.LayerNorm(dtype=self.dtype)(x)
    h = nn.gelu(nn.Dense(4 * x.shape[-1], dtype=self.dtype, **dense_init)(h))
    h = nn.Dense(x.shape[-1], dtype=self.dtype, **dense_init)(h)
    return x + drop()(h)


class ViT(nn.Module):
  """Logits (B, num_classes) of NHWC images whose sides are multiples of `patch`."""
  num_classes: int
  width: int
  depth: int
  heads: int
  patch: int = 16
  pool: str = "cls"  # "cls" token or "gap" (mean of the patch tokens)
  posemb: str = "learn"  # "learn" or "sincos2d"
  pre_logits: bool = False
  dropout: float = 0.0  # Before the head, as in the ResNets.
  stochastic_depth: float = 0.0  # Drop-path rate of the last block (linear from 0).
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    if x.shape[1] % self.patch or x.shape[2] % self.patch:
      raise ValueError(f"Image size {x.shape[1:3]} is not a multiple of the patch size "
                       f"{self.patch}; resize or crop the images to a multiple.")
    x = nn.Conv(self.width, (self.patch,) * 2, (self.patch,) * 2, padding="VALID",
                dtype=self.dtype, name="embedding")(x.astype(self.dtype))
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    if self.posemb == "learn":
      x = x + self.param("pos_embedding", nn.initializers.normal(0.02), (1, h * w, c))
    else:
      x = x + sincos2d(h, w, c)
    if self.pool == "cls":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.tile(cls, (b, 1, 1)).astype(x.dtype), x], axis=1)
    for i in range(self.depth):
      rate = self.stochastic_depth * i / max(self.depth - 1, 1)
      x = EncoderBlock(self.heads, rate, self.dtype, name=f"block{i}")(x, train)
    x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
    x = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
    if self.pre_logits:
      x = nn.tanh(nn.Dense(c, dtype=self.dtype, name="pre_logits")(x))
    # big_vision zero-initialises the head; DeiT uses a small truncated normal.
    head_init = (nn.initializers.zeros if self.pre_logits
                 else nn.initializers.truncated_normal(0.02))
    return head.logits(self, x, train, num_classes=self.num_classes,
                       dropout=self.dropout, dtype=self.dtype, kernel_init=head_init)


def create(name, *, num_classes, dropout=0.0, stochastic_depth=0.0,
           dtype=jnp.float32):
  width, depth, heads, pool, posemb, pre_logits = _SPECS[name]
  return ViT(num_classes=num_classes, width=width, depth=depth, heads=heads,
             patch=_PATCH.get(name, 16), pool=pool, posemb=posemb,
             pre_logits=pre_logits, dropout=dropout,
             stochastic_depth=stochastic_depth, dtype=dtype)
