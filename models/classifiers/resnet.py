"""ResNet (He et al. 2016, v1.5) and ResNet-RS (Bello et al. 2021) image classifiers.

ResNet v1.5 is the torchvision / MLPerf variant: the stride of a downsampling
bottleneck sits on its 3x3 convolution. ResNet-RS adds, as published:
  - the ResNet-D stem: three 3x3 convs (32, 32, 64 channels, the first with stride 2),
    and the stem max pool replaced by a stride-2 3x3 conv (64 channels);
  - ResNet-D shortcuts: a downsampling shortcut is 2x2 average pooling, then a 1x1 conv;
  - squeeze-and-excitation in every bottleneck (ratio 0.25 of the block's output
    width), applied after its last batch norm, before the residual sum;
  - stochastic depth, its rate growing linearly over the four stages (rate·(s+2)/5).
Both zero-initialise the last batch-norm scale of every residual branch (each block
starts as the identity) and apply dropout before the classifier.
"""
import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from synthfactory.models.classifiers import head

# (block, blocks per stage, base width) of each named variant.
_SPECS = {
    "resnet18": ("basic", (2, 2, 2, 2), 64),
    "resnet34": ("basic", (3, 4, 6, 3), 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 64),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 64),
    "resnet_tiny": ("bottleneck", (1, 1, 1, 1), 8),  # Tests only.
    "resnet_rs50": ("bottleneck", (3, 4, 6, 3), 64),
    "resnet_rs101": ("bottleneck", (3, 4, 23, 3), 64),
    "resnet_rs152": ("bottleneck", (3, 8, 36, 3), 64),
    "resnet_rs_tiny": ("bottleneck", (1, 1, 1, 1), 8),  # Tests only.
}
NAMES = tuple(_SPECS)

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # He et al.


class SqueezeExcite(nn.Module):
  """Channel gating: x · sigmoid(W2 relu(W1 mean_hw(x)))."""
  reduced: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(nn.Conv(self.reduced, (1, 1), dtype=self.dtype, name="reduce")(s))
    s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="expand")(s)
    return x * nn.sigmoid(s)


class Block(nn.Module):
  """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 ×4) residual block."""
  width: int
  strides: int
  bottleneck: bool
  resnet_d: bool
  se_ratio: float
  drop_rate: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=_conv_init)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    out_width = self.width * 4 if self.bottleneck else self.width
    s = (self.strides, self.strides)
    if self.bottleneck:
      h = nn.relu(norm()(conv(self.width, (1, 1))(x)))
      h = nn.relu(norm()(conv(self.width, (3, 3), s)(h)))
      h = norm(scale_init=nn.initializers.zeros)(conv(out_width, (1, 1))(h))
    else:
      h = nn.relu(norm()(conv(self.width, (3, 3), s)(x)))
      h = norm(scale_init=nn.initializers.zeros)(conv(out_width, (3, 3))(h))
    if self.se_ratio:
      h = SqueezeExcite(max(1, int(out_width * self.se_ratio)), self.dtype)(h)
    if self.drop_rate:  # Stochastic depth: drops the whole branch per example.
      h = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3),
                     deterministic=not train)(h)
    if x.shape[-1] != out_width or self.strides != 1:
      if self.resnet_d and self.strides != 1:
        x = nn.avg_pool(x, s, s, padding="SAME")
        s = (1, 1)
      x = norm()(conv(out_width, (1, 1), s, name="proj")(x))
    return nn.relu(x + h)


class ResNet(nn.Module):
  """Logits (B, num_classes) of NHWC images."""
  num_classes: int
  block: str
  stage_sizes: Sequence[int]
  width: int = 64
  rs: bool = False  # ResNet-RS: ResNet-D stem and shortcuts, SE, stochastic depth.
  dropout: float = 0.0
  stochastic_depth: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=_conv_init)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    x = x.astype(self.dtype)
    if self.rs:
      for i, (feat, stride) in enumerate([(self.width // 2, 2), (self.width // 2, 1),
                                          (self.width, 1), (self.width, 2)]):
        x = nn.relu(norm(name=f"stem_bn{i}")(
            conv(feat, (3, 3), (stride, stride), name=f"stem_conv{i}")(x)))
    else:
      x = nn.relu(norm(name="stem_bn")(conv(self.width, (7, 7), (2, 2),
                                            name="stem_conv")(x)))
      x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    for stage, blocks in enumerate(self.stage_sizes):
      drop = self.stochastic_depth * (stage + 2) / 5 if self.rs else 0.0
      for i in range(blocks):
        x = Block(self.width * 2 ** stage, 2 if stage and not i else 1,
                  bottleneck=self.block == "bottleneck", resnet_d=self.rs,
                  se_ratio=0.25 if self.rs else 0.0, drop_rate=drop,
                  dtype=self.dtype)(x, train)
    return head.logits(self, jnp.mean(x, axis=(1, 2)), train,
                       num_classes=self.num_classes, dropout=self.dropout,
                       dtype=self.dtype)


def create(name, *, num_classes, dropout=0.0, stochastic_depth=0.0,
           dtype=jnp.float32):
  block, stages, width = _SPECS[name]
  rs = name.startswith("resnet_rs")
  if stochastic_depth and not rs:
    raise ValueError(f"{name} has no stochastic depth (only ResNet-RS does); set "
                     f"model.stochastic_depth=0.")
  return ResNet(num_classes=num_classes, block=block, stage_sizes=stages, width=width,
                rs=rs, dropout=dropout, stochastic_depth=stochastic_depth, dtype=dtype)
