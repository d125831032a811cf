"""Diffusion training and fine-tuning.

Variants:
  ci          the tiny U-Net on 256 Fashion-MNIST images at 8 px; under a minute on
              a laptop CPU, mostly compilation.
  fashion     (default) the 28 px Fashion-MNIST U-Net on the real training set.
  imagenet64  the paper's 64 px base model: Adafactor, batch 2048, 210k steps (§4.1).
  sr256       the paper's 64 → 256 super-resolution model: Adam, 490k steps, with
              noise-conditioning augmentation of the low-res input.
Both ImageNet variants cross-attend to class prompts: pass
--config.text_embeddings=<.npy of per-class prompt embeddings>.

`init_from=<run workdir or checkpoints dir>` fine-tunes a trained model; a different
`model.num_classes` starts the class-embedding table afresh.
"""
import ml_collections

from synthfactory.models import unet


def get_config(arg="fashion"):
  c = ml_collections.ConfigDict()
  c.model = unet.unet_config("fashion")
  # source: fashion_mnist (idx files in `dir`, default $FASHION_MNIST_DIR or the
  # Debian package's folder) or tfds (`name`, prepared as ArrayRecord in `data_dir`).
  # image_size > 0 center-crops and resizes TFDS images of varying sizes on the host;
  # fixed-size images are resized on the device to the model's size.
  c.data = ml_collections.ConfigDict(dict(
      source="fashion_mnist", split="train", dir="", name="", data_dir="",
      image_size=0, max_examples=0))
  c.optim = ml_collections.ConfigDict(dict(
      name="adam", lr=2e-4, warmup_steps=1000, b1=0.9, b2=0.999, weight_decay=0.0,
      clip_norm=1.0, decay_start=0, final_lr_fraction=0.0))
  # decay_start > 0: cosine cool-down of the rate from that step to num_steps.
  c.ema_decay = 0.999
  c.label_dropout = 0.1  # Trains the null label for classifier-free guidance.
  c.max_aug = 0.0  # Super-resolution: noise augmentation level ~ U[0, max_aug].
  c.batch_size, c.num_steps, c.seed = 128, 30_000, 0
  c.log_every, c.checkpoint_every, c.keep_checkpoints = 100, 2_000, 3
  c.init_from = ""
  # Text-conditioned U-Nets (context_dim set): a .npy of per-class prompt embeddings,
  # (num_classes, L, D) or (num_classes, D), made by the frozen text encoder.
  c.text_embeddings = ""

  if arg == "ci":
    c.model = unet.unet_config("tiny")
    c.model.channels, c.model.num_classes = 1, 10  # Fashion-MNIST, at 8 px.
    c.data.max_examples = 256
    c.optim.lr, c.optim.warmup_steps = 1e-3, 10
    c.batch_size, c.num_steps = 16, 150
    c.log_every, c.checkpoint_every = 10, 50
  elif arg == "imagenet64":
    c.model = unet.unet_config("imagenet64")
    c.data.update(source="tfds", name="imagenet_resized/64x64")
    c.optim.update(name="adafactor", lr=1e-4, warmup_steps=10_000)
    c.ema_decay = 0.9999
    c.batch_size, c.num_steps = 2048, 210_000
    c.checkpoint_every = 5_000
  elif arg == "sr256":
    c.model = unet.unet_config("sr256")
    c.data.update(source="tfds", name="imagenet2012", image_size=256)
    c.optim.update(name="adam", lr=1e-4, warmup_steps=10_000)
    c.ema_decay = 0.9999
    c.max_aug = 0.5  # Covers the paper's sampling sweep of aug levels, 0 … 0.4.
    c.batch_size, c.num_steps = 2048, 490_000
    c.checkpoint_every = 5_000
  elif arg != "fashion":
    raise ValueError(f"Unknown config variant {arg!r}; choose ci, fashion, imagenet64 "
                     f"or sr256.")
  return c
