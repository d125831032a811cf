"""Classifier training: the CAS protocol, the recipes of Tables A.1/A.2, and small runs.

Variants:
  ci                tiny CNN, 30 steps on Fashion-MNIST (idx files); seconds.
  fashion           the embedded default: small_cnn on real Fashion-MNIST (28 px),
                    evaluated on its test split; minutes on a CPU.
  cas_resnet50      CAS (§5.2, App. A.4): ResNet-50 trained on generated data only,
                    evaluated on real ImageNet validation; 90 epochs, batch 1024, SGD
                    momentum 0.9, lr 0 → 0.4 over 5 epochs then ×0.1 at 30/60/80,
                    weight decay 1e-4, resize 256 → center crop 224 for train and eval.
  resnet50 resnet101 resnet152 resnet_rs50 resnet_rs101 resnet_rs152
                    Table A.1 (input sizes of Table 3: ResNet-RS-50/101 at 160 px,
                    resnet_rs101_190 at 190 px, ResNet-RS-152 at 224 px).
  vit_s16 deit_s deit_b deit_l
                    Table A.2 at 224 px (deit_b_384: DeiT-B at 384 px, Table 3).

The ImageNet recipes train on real data; Table 3's other columns are the same recipe
with `--config.data.mix=synthetic` (generated only) or `concat` (real + generated) and
`--config.data.synthetic=synthetic_imagenet/<res>x_<mult>x:train`; `ratio` with
`--config.data.synthetic_fraction=f` fixes the synthetic share of every batch. CAS on
real data (Table 2's "Real" row): `--config.data.mix=real`.
"""
import ml_collections

from synthfactory.models import classifiers

# Table A.1: epochs, lr, weight decay, RandAugment magnitude (batch 4096, momentum,
# cosine, 5 warm-up epochs, label smoothing 0.1, dropout 0.25).
_CONVNETS = {
    "resnet50": (130, 1.6, 1e-4, 10),
    "resnet101": (200, 1.6, 1e-4, 15),
    "resnet152": (200, 1.6, 1e-4, 15),
    "resnet_rs50": (350, 1.6, 4e-5, 10),
    "resnet_rs101": (350, 1.6, 4e-5, 15),
    "resnet_rs152": (350, 1.6, 4e-5, 15),
}
# Input sizes of Table 3; the others are 224 px.
_IMAGE_SIZE = {"resnet_rs50": 160, "resnet_rs101": 160, "resnet_rs101_190": 190,
               "deit_b_384": 384}
# Table A.2: batch size, lr, weight decay, warm-up epochs, label smoothing, RandAugment
# magnitude, mixup α, cutmix α (300 epochs, AdamW, cosine). The table's "Mixup prob."
# and "Cutmix prob." are the Beta(α, α) parameters of both recipes.
_TRANSFORMERS = {
    # big_vision's wd=1e-4 is not scaled by the learning rate; optax's adamw scales
    # it, so 1e-4 / lr(1e-3) = 0.1 is the same decay.
    "vit_s16": (1024, 1e-3, 0.1, 10, 0.0, 10, 0.2, 0.0),
    # Table A.2 lists no weight decay for DeiT while following DeiT's recipe [64],
    # whose AdamW decay is 0.05: we keep the recipe's value.
    "deit_s": (4096, 4e-3, 0.05, 5, 0.1, 9, 0.8, 1.0),
    "deit_b": (4096, 4e-3, 0.05, 5, 0.1, 9, 0.8, 1.0),
    "deit_l": (4096, 4e-3, 0.05, 5, 0.1, 9, 0.8, 1.0),
}
VARIANTS = ("ci", "fashion", "cas_resnet50", *_CONVNETS, "resnet_rs101_190",
            *_TRANSFORMERS, "deit_b_384")


def get_config(arg="fashion"):
  if arg not in VARIANTS:
    raise ValueError(f"Unknown config variant {arg!r}; choose one of {VARIANTS}.")
  c = ml_collections.ConfigDict()
  c.model = classifiers.model_config("small_cnn", num_classes=10)
  # Specs are "name:split" (TFDS, ArrayRecord in data_dir), "<dataset folder>:split" or
  # "fashion_mnist_idx:train|test"; see training/classifier_data.py. synthetic_keep: a
  # .npy of indices, the only synthetic examples trained on ("" = all of them).
  # Soft targets (distillation): with teacher_weight w > 0 the target is (1 - w) ·
  # label + w · the teacher's probabilities in real_teacher / synthetic_teacher (.npy,
  # (examples, classes) in split order), softened at teacher_temperature.
  c.data = ml_collections.ConfigDict(dict(
      real="fashion_mnist_idx:train", synthetic="", mix="real", synthetic_fraction=0.0,
      eval="fashion_mnist_idx:test", data_dir="", image_size=28, train_crop="none",
      eval_crop="none", crop_fraction=0.875, cache_mb=1024, synthetic_keep="",
      teacher_weight=0.0, teacher_temperature=1.0, real_teacher="",
      synthetic_teacher=""))
  # On the device (training/classifier_augment.py); randaug_magnitude=0 is no
  # RandAugment, mixup/cutmix alpha 0 is none.
  c.augment = ml_collections.ConfigDict(dict(
      pad_crop=2, flip=True, randaug_layers=2, randaug_magnitude=0, randaug_std=0.0,
      mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0))
  c.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.2, momentum=0.9, nesterov=True, b1=0.9, b2=0.999,
      weight_decay=5e-4, clip_norm=0.0, schedule="cosine", warmup_epochs=1,
      decay_epochs=(), decay_factor=0.1))
  c.ema_decay = 0.0  # Evaluation uses the EMA of the variables; 0: the variables.
  # A trained classifier's workdir: its (EMA) variables start this run, the optimizer
  # and schedule fresh (pretraining on other data); "" = random init. Ignored on resume.
  c.init_from = ""
  # num_steps > 0 overrides epochs; eval_every (steps) 0: evaluate at the end only.
  c.epochs, c.num_steps, c.batch_size, c.eval_batch_size, c.seed = 6, 0, 256, 500, 0
  c.log_every, c.checkpoint_every, c.keep_checkpoints, c.eval_every = 100, 1000, 2, 0

  if arg == "ci":
    c.model.name = "small_cnn_tiny"
    c.data.eval = "fashion_mnist_idx:test[:500]"
    c.num_steps, c.batch_size, c.eval_batch_size = 30, 32, 100
    c.optim.update(lr=0.05, warmup_epochs=0)  # No warm-up in 30 steps: a gentler lr.
    c.log_every, c.checkpoint_every = 10, 10
  elif arg != "fashion":
    _imagenet(c, arg)
  return c


def _imagenet(c, arg):
  name = {"resnet_rs101_190": "resnet_rs101", "deit_b_384": "deit_b"}.get(arg, arg)
  size = _IMAGE_SIZE.get(arg, 224)
  c.model = classifiers.model_config(name.replace("cas_", ""), num_classes=1000,
                                     dtype="bfloat16")
  c.data.update(real="imagenet2012:train", eval="imagenet2012:validation",
                image_size=size, train_crop="inception", eval_crop="center")
  c.augment.update(pad_crop=0, flip=True)
  c.eval_batch_size, c.log_every, c.checkpoint_every = 1000, 100, 2000
  if arg == "cas_resnet50":
    c.data.update(synthetic="synthetic_imagenet/1024x_1x:train", mix="synthetic",
                  train_crop="center")  # One center crop per image, no flips (CAS).
    c.augment.flip = False
    c.optim.update(name="sgd", lr=0.4, momentum=0.9, nesterov=False, weight_decay=1e-4,
                   schedule="step", warmup_epochs=5, decay_epochs=(30, 60, 80))
    c.epochs, c.batch_size = 90, 1024
  elif name in _CONVNETS:
    epochs, lr, wd, randaug = _CONVNETS[name]
    c.model.dropout = 0.25
    c.augment.update(randaug_magnitude=randaug, label_smoothing=0.1)
    c.optim.update(name="sgd", lr=lr, momentum=0.9, nesterov=False, weight_decay=wd,
                   schedule="cosine", warmup_epochs=5)
    c.epochs, c.batch_size = epochs, 4096
    if name.startswith("resnet_rs"):
      c.ema_decay = 0.9999  # Bello et al. train ResNet-RS with an EMA of the weights.
  else:
    batch, lr, wd, warmup, smoothing, randaug, mixup, cutmix = _TRANSFORMERS[name]
    c.augment.update(randaug_magnitude=randaug, label_smoothing=smoothing,
                     mixup_alpha=mixup, cutmix_alpha=cutmix)
    c.optim.update(name="adamw", lr=lr, weight_decay=wd, schedule="cosine",
                   warmup_epochs=warmup)
    c.epochs, c.batch_size = 300, batch
    if name == "vit_s16":
      c.optim.clip_norm = 1.0  # Beyer et al. 2022.
    else:
      c.model.stochastic_depth = 0.1  # DeiT's drop-path rate.
      c.augment.randaug_std = 0.5  # DeiT: rand-m9-mstd0.5.
