"""Small classifiers for 28x28 images (Fashion-MNIST), fast enough to train on a CPU.

  small_cnn     a 2x2 space-to-depth stem (28x28x1 → 14x14x4: a lossless reshape that
                spares the CPU convolutions at full resolution and one channel, 3-4x
                slower per FLOP), two VGG-style stages of two 3x3 conv + batch norm
                (32 then 64 channels, 2x2 max pooling between them) and a linear
                head on the flattened 7x7 map: where a feature is matters for
                centred 28 px objects (Fashion-MNIST test accuracy 91.5% after 6
                epochs, vs 90.9% after 8 with global average pooling, for +30k
                parameters and no measurable time).
  small_cnn_w64 small_cnn twice as wide (64 then 128 channels; 3.3x the parameters,
                ~3x the training time on a CPU): more capacity to use extra data
                (results/classifier_capacity.json).
  small_resnet  the CIFAR ResNet-20 of He et al. 2016: a 3x3 stem and three stages of
                three basic blocks (16, 32, 64 channels; stride 2 at stages 2 and 3).
"""
import functools

import flax.linen as nn
import jax.numpy as jnp

from synthfactory.models.classifiers import head
from synthfactory.models.classifiers import resnet

# width, blocks per stage (small_resnet only)
_SPECS = {
    "small_cnn": (32, None),
    "small_cnn_w64": (64, None),
    "small_resnet": (16, 3),
    "small_cnn_tiny": (4, None),  # Tests only.
    "small_resnet_tiny": (4, 1),  # Tests only.
}
NAMES = tuple(_SPECS)


class SmallCNN(nn.Module):
  num_classes: int
  width: int = 32
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), use_bias=False,
                             dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             dtype=self.dtype)
    b, h, w, c = x.shape
    if h % 2 or w % 2:
      raise ValueError(f"small_cnn needs even image sides, got {h}x{w}.")
    x = x.astype(self.dtype).reshape(b, h // 2, 2, w // 2, 2, c)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)
    for stage in range(2):
      if stage:
        x = nn.max_pool(x, (2, 2), (2, 2))
      for _ in range(2):
        x = nn.relu(norm()(conv(self.width * 2 ** stage)(x)))
    x = x.reshape(b, -1)
    self.sow("intermediates", "features", x)  # classifiers.apply_with_features
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(
        jnp.float32)


class SmallResNet(nn.Module):
  num_classes: int
  width: int = 16
  blocks: int = 3
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(self.width, (3, 3), use_bias=False, dtype=self.dtype,
                name="stem_conv")(x.astype(self.dtype))
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             dtype=self.dtype, name="stem_bn")(x))
    for stage in range(3):
      for i in range(self.blocks):
        x = resnet.Block(self.width * 2 ** stage, 2 if stage and not i else 1,
                         bottleneck=False, resnet_d=False, se_ratio=0.0, drop_rate=0.0,
                         dtype=self.dtype)(x, train)
    return head.logits(self, jnp.mean(x, axis=(1, 2)), train,
                       num_classes=self.num_classes, dropout=self.dropout,
                       dtype=self.dtype)


def create(name, *, num_classes, dropout=0.0, stochastic_depth=0.0,
           dtype=jnp.float32):
  if stochastic_depth:
    raise ValueError(f"{name} has no stochastic depth; set model.stochastic_depth=0.")
  width, blocks = _SPECS[name]
  if blocks is None:
    return SmallCNN(num_classes=num_classes, width=width, dropout=dropout, dtype=dtype)
  return SmallResNet(num_classes=num_classes, width=width, blocks=blocks,
                     dropout=dropout, dtype=dtype)
