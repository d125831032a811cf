"""Generation job configs.

Variants:
  ci       a freshly initialised tiny U-Net (no checkpoint needed) at 8 px, 4 classes
           × 5 images, 3 shards (7, 7, 6: a padded batch), 4 DDIM steps: seconds,
           for tests and smoke runs.
  ci_cascade  ci's 8 px base, then a tiny_sr stage to 16 px (both initialised, 4
           DDIM steps each): the cascade path of the worker, in seconds.
  fashion  (default) 1× Fashion-MNIST (6000 a class) from a trained 28 px model:
           pass --config.checkpoint=<training workdir or checkpoints dir>.

Plan sources: fashion_mnist (the real train histogram), imagenet2012 (the shipped
per-class train counts), uniform (`per_class` × `num_classes`), tfds (the label
histogram of any prepared TFDS dataset: `tfds_name` "name[/config]", `tfds_split`,
`data_dir`; e.g. --config.plan.source=tfds --config.plan.tfds_name=
fashion_mnist_local); each scaled by `multiplier` (0 < N ≤ 10, fractions allowed).
"""
import ml_collections

from synthfactory.models import samplers


def get_config(arg="fashion"):
  c = ml_collections.ConfigDict()
  c.name, c.split = "synthetic_fashion_mnist", "train"
  # A training run's workdir or checkpoints dir; or, for tests only, init=<U-Net
  # variant> samples from freshly initialised weights.
  c.checkpoint, c.init, c.use_ema = "", "", True
  # tfds_*/data_dir: source="tfds", the label histogram of a prepared TFDS split.
  c.plan = ml_collections.ConfigDict(dict(
      source="fashion_mnist", multiplier="1", num_classes=0, per_class=0,
      tfds_name="", tfds_split="train", data_dir=""))
  c.sampler = ml_collections.ConfigDict(samplers.SamplerConfig(
      name="ddim", steps=100, guidance=1.0).fields())
  # Super-resolution stages run after the base model inside the worker (base → SR
  # → SR); each is sr_stage(...) below. Empty: the base model's images are the data.
  c.sr_stages = ()
  c.seed = 0
  # Items are always sampled in batches of exactly this size (the last one padded),
  # so an image's bytes never depend on how many items its shard has left.
  c.batch_size = 64
  c.num_shards = 16
  c.image = ml_collections.ConfigDict(dict(encoding="png", jpeg_quality=95))
  # Images/s of one worker for --dry_run's time estimate (0: unknown).
  c.throughput = 0.0

  if arg in ("ci", "ci_cascade"):
    c.name, c.init = "synthetic_ci", "tiny"
    c.plan.update(source="uniform", num_classes=4, per_class=5)
    c.sampler.steps = 4
    c.batch_size, c.num_shards = 4, 3
    if arg == "ci_cascade":
      c.name = "synthetic_ci_cascade"
      c.sr_stages = (sr_stage(init="tiny_sr", steps=4),)
  elif arg != "fashion":
    raise ValueError(f"Unknown config variant {arg!r}; choose ci, ci_cascade or "
                     "fashion.")
  return c


def sr_stage(checkpoint="", init="", use_ema=True, steps=32, aug_level=0.0,
             **sampler):
  """One super-resolution stage: its checkpoint (or, tests only, init=<U-Net
  variant>), sampler config (DDIM, guidance 1.0 by default: the paper's SR setting)
  and the noise-conditioning level of its low-resolution input (0 at sampling)."""
  return ml_collections.ConfigDict(dict(
      checkpoint=checkpoint, init=init, use_ema=use_ema, aug_level=aug_level,
      sampler=samplers.SamplerConfig(**{"name": "ddim", "steps": steps,
                                        "guidance": 1.0, **sampler}).fields()))
