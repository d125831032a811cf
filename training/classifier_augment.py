"""Batched, jit-able training augmentations of classifier batches, run on the device.

The host hands over uint8 images already cropped to their final size
(classifier_data); here they become float images in [-1, 1] and soft targets:
  pad-crop   zero-pad by `pad_crop` pixels, take a random window of the original size;
  flip       left-right with probability 1/2;
  RandAugment (Cubuk et al. 2020): `randaug_layers` ops per image, each drawn
             uniformly from the paper's 14: identity, auto-contrast, equalize, rotate,
             solarize, color, posterize, contrast, brightness, sharpness, shear-x/y,
             translate-x/y. Magnitude m ∈ [0, 10] (per op ~ N(m, randaug_std), as in
             DeiT's mstd) scales every op so that a larger m is always stronger (timm's
             "increasing" variants): rotate ±30°·m/10, shear ±0.3·m/10, translate
             ±0.45·size·m/10, color/contrast/brightness/sharpness factor 1 ± 0.9·m/10,
             solarize above 256·(1 − m/10), posterize to 8 − ⌊4·m/10⌋ bits. Geometric
             ops fill with grey (128) and sample bilinearly;
  label smoothing, then mixup (Zhang et al.) or cutmix (Yun et al.) with the batch in
             reverse order: λ ~ Beta(α, α) per batch; with both enabled each batch picks
             one, cutmix with probability 1/2 (DeiT / timm).
Every image gets its own random draws from one key: a step's augmentation is a pure
function of (batch, key).
"""
import jax
import jax.numpy as jnp

_OPS = ("identity", "auto_contrast", "equalize", "rotate", "solarize", "color",
        "posterize", "contrast", "brightness", "sharpness", "shear_x", "shear_y",
        "translate_x", "translate_y")
_FILL = 128.0


def augment(images, labels, key, config, num_classes, teacher=None, teacher_weight=0.0):
  """uint8 images (B, H, W, C), int labels (B,) → (float32 images in [-1, 1],
  float32 targets (B, num_classes)) augmented as `config` (config.augment) says.
  With `teacher` targets (B, num_classes), the label part is (1 - teacher_weight) of
  each target and the teacher's the rest (before mixup/cutmix mixes targets too)."""
  keys = jax.random.split(key, 4)
  x = images.astype(jnp.float32)
  if config.pad_crop:
    x = pad_crop(x, keys[0], config.pad_crop)
  if config.flip:
    x = flip(x, keys[1])
  for i in range(config.randaug_layers if config.randaug_magnitude else 0):
    x = rand_augment_layer(x, jax.random.fold_in(keys[2], i), config.randaug_magnitude,
                           config.randaug_std)
  x = normalize(x)
  targets = smooth_labels(labels, num_classes, config.label_smoothing)
  if teacher is not None:
    targets = (1.0 - teacher_weight) * targets + teacher_weight * teacher
  if config.mixup_alpha or config.cutmix_alpha:
    x, targets = mixup_cutmix(x, targets, keys[3], config.mixup_alpha,
                              config.cutmix_alpha)
  return x, targets


def normalize(images):
  """[0, 255] (uint8 or float) → float32 in [-1, 1]: what the model sees."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def smooth_labels(labels, num_classes, smoothing):
  return (jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing)
          + smoothing / num_classes)


def pad_crop(x, key, pad):
  b, h, w, _ = x.shape
  padded = jnp.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
  crop = lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def flip(x, key):
  mirror = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
  return jnp.where(mirror, x[:, :, ::-1], x)


# --- RandAugment ----------------------------------------------------------------------


def rand_augment_layer(x, key, magnitude, magnitude_std=0.0):
  """One RandAugment op on every image of x (float, [0, 255]), each image its own."""
  b = x.shape[0]
  k_op, k_mag, k_sign = jax.random.split(key, 3)
  op = jax.random.randint(k_op, (b,), 0, len(_OPS))
  m = magnitude + magnitude_std * jax.random.normal(k_mag, (b,))
  m = jnp.clip(m, 0.0, 10.0) / 10.0
  signed = m * jnp.where(jax.random.bernoulli(k_sign, 0.5, (b,)), 1.0, -1.0)
  is_op = {name: op == i for i, name in enumerate(_OPS)}
  # Geometric ops: one bilinear warp, the identity for images with a colour op.
  x = _warp(x, _affine(x.shape[1:3], signed, is_op))
  # Colour ops: each computed for the batch, each image keeping its own.
  factor = 1.0 + 0.9 * signed
  candidates = {
      "auto_contrast": lambda: _auto_contrast(x),
      "equalize": lambda: _equalize(x),
      "solarize": lambda: jnp.where(x >= _per(256.0 * (1.0 - m)), 255.0 - x, x),
      "posterize": lambda: _posterize(x, 8 - jnp.floor(4.0 * m)),
      "color": lambda: _blend(_gray(x), x, factor),
      "contrast": lambda: _blend(jnp.mean(_gray(x), axis=(1, 2, 3), keepdims=True), x,
                                 factor),
      "brightness": lambda: _blend(jnp.zeros_like(x), x, factor),
      "sharpness": lambda: _blend(_smooth(x), x, factor),
  }
  for name, fn in candidates.items():
    x = jnp.where(_per(is_op[name]), fn(), x)
  return x


def _per(values):
  """(B,) → (B, 1, 1, 1), to broadcast per image."""
  return values[:, None, None, None]


def _blend(base, x, factor):
  return jnp.clip(base + _per(factor) * (x - base), 0.0, 255.0)


def _gray(x):
  if x.shape[-1] == 1:
    return x
  return jnp.sum(x * jnp.array([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


def _auto_contrast(x):
  lo = jnp.min(x, axis=(1, 2), keepdims=True)
  hi = jnp.max(x, axis=(1, 2), keepdims=True)
  scale = jnp.where(hi > lo, 255.0 / jnp.maximum(hi - lo, 1e-3), 1.0)
  return jnp.where(hi > lo, (x - lo) * scale, x)


def _equalize(x):
  """PIL's ImageOps.equalize, per image and channel."""
  b, h, w, c = x.shape
  q = jnp.clip(jnp.round(x), 0, 255).astype(jnp.int32)
  flat = jnp.moveaxis(q, -1, 1).reshape(b * c, h * w)
  hist = jax.vmap(lambda v: jnp.bincount(v, length=256))(flat)
  last_bin = 255 - jnp.argmax(hist[:, ::-1] > 0, axis=1)
  last = jnp.take_along_axis(hist, last_bin[:, None], axis=1)[:, 0]
  step = (h * w - last) // 255
  lut = (step[:, None] // 2 + jnp.cumsum(hist, axis=1) - hist) // jnp.maximum(
      step[:, None], 1)
  lut = jnp.clip(lut, 0, 255)
  out = jnp.take_along_axis(lut, flat, axis=1).astype(jnp.float32)
  out = jnp.where(step[:, None] > 0, out, flat.astype(jnp.float32))
  return jnp.moveaxis(out.reshape(b, c, h, w), 1, -1)


def _posterize(x, bits):
  shift = 2.0 ** (8 - _per(bits))
  return jnp.floor(jnp.clip(x, 0, 255) / shift) * shift


def _smooth(x):
  """PIL's SMOOTH filter (3x3, centre weight 5), borders left as they are."""
  c = x.shape[-1]
  kernel = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32) / 13.0
  kernel = jnp.tile(kernel[:, :, None, None], (1, 1, 1, c))
  blurred = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=c)
  h, w = x.shape[1:3]
  inner = (jnp.arange(h)[:, None] % (h - 1) != 0) & (jnp.arange(w)[None] % (w - 1) != 0)
  return jnp.where(inner[None, :, :, None], blurred, x)


def _affine(size, signed, is_op):
  """Per-image 2x3 maps from output to input pixel coordinates (about the centre)."""
  h, w = size
  zero, one = jnp.zeros_like(signed), jnp.ones_like(signed)
  angle = jnp.where(is_op["rotate"], signed * jnp.pi / 6, 0.0)
  shear_x = jnp.where(is_op["shear_x"], 0.3 * signed, 0.0)
  shear_y = jnp.where(is_op["shear_y"], 0.3 * signed, 0.0)
  tx = jnp.where(is_op["translate_x"], 0.45 * w * signed, 0.0)
  ty = jnp.where(is_op["translate_y"], 0.45 * h * signed, 0.0)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Input = R(angle)·S(shear)·(output − centre) + centre − translation.
  a = jnp.stack([jnp.stack([cos, sin, zero], -1), jnp.stack([-sin, cos, zero], -1),
                 jnp.stack([zero, zero, one], -1)], 1)
  s = jnp.stack([jnp.stack([one, shear_x, zero], -1),
                 jnp.stack([shear_y, one, zero], -1), jnp.stack([zero, zero, one], -1)], 1)
  m = a @ s
  centre = jnp.array([(w - 1) / 2, (h - 1) / 2])
  offset = centre - jnp.einsum("bij,j->bi", m[:, :2, :2], centre) - jnp.stack([tx, ty],
                                                                              -1)
  return jnp.concatenate([m[:, :2, :2], offset[:, :, None]], axis=2)


def _warp(x, maps):
  """Bilinear resampling of each image at its map's input coordinates; grey outside.
  An identity map reproduces the image exactly (all weights on one pixel)."""
  b, h, w, c = x.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing="ij")
  grid = jnp.stack([xs.ravel(), ys.ravel(), jnp.ones(h * w)])
  src = jnp.einsum("bij,jn->bin", maps, grid)  # (B, 2, H·W): x, y
  x0, y0 = jnp.floor(src[:, 0]), jnp.floor(src[:, 1])
  fx, fy = src[:, 0] - x0, src[:, 1] - y0
  flat = x.reshape(b, h * w, c)
  out = 0.0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      xi, yi = x0 + dx, y0 + dy
      inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
      index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
      value = jnp.take_along_axis(flat, index[:, :, None], axis=1)
      out = out + (wx * wy)[:, :, None] * jnp.where(inside[:, :, None], value, _FILL)
  return out.reshape(b, h, w, c)


# --- mixup / cutmix -------------------------------------------------------------------


def mixup_cutmix(x, targets, key, mixup_alpha, cutmix_alpha):
  """Mixes each example with its mirror in the batch (x[::-1]); see the module doc."""
  k_pick, k_mix, k_cut, k_box = jax.random.split(key, 4)
  partner, partner_targets = x[::-1], targets[::-1]
  b, h, w, _ = x.shape
  lam_mix = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha else 1.0
  mixed, lam = lam_mix * x + (1 - lam_mix) * partner, lam_mix
  if cutmix_alpha:
    lam_cut = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha)
    # A box of area (1 − λ)·H·W at a uniform centre, clipped to the image.
    cy, cx = jax.random.uniform(k_box, (2,)) * jnp.array([h, w])
    rh, rw = h * jnp.sqrt(1 - lam_cut) / 2, w * jnp.sqrt(1 - lam_cut) / 2
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None]
    inside = ((rows >= jnp.round(cy - rh)) & (rows < jnp.round(cy + rh))
              & (cols >= jnp.round(cx - rw)) & (cols < jnp.round(cx + rw)))
    cut = jnp.where(inside[None, :, :, None], partner, x)
    lam_cut = 1 - jnp.mean(inside)  # The share of the image actually kept.
    use_cut = jax.random.bernoulli(k_pick, 0.5) if mixup_alpha else True
    mixed = jnp.where(use_cut, cut, mixed)
    lam = jnp.where(use_cut, lam_cut, lam)
  return mixed, lam * targets + (1 - lam) * partner_targets
