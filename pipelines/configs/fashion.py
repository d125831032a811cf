"""The embedded factory: Fashion-MNIST, end to end on a laptop CPU.

Variants:
  ci    seconds of work per stage, for the integration test: a tiny U-Net trained
        here for a few steps, 60 synthetic images (0.001×), tiny classifiers.
  demo  (default; `make demo`, ~15 min on 2 CPU cores) the shipped diffusion model
        generates 3,000 images (0.05×, 300 a class); classifiers train on 3,000 real,
        3,000 synthetic, and both, and are tested on the 10,000 real test images.
  full  (~4 h) 60,000 synthetic images (1×) against the 60,000 real ones,
        classifiers trained 60 epochs; the numbers of results/embedded_full.json.
        `--config.generate.plan.multiplier=2` for 2×.

The shipped model and the sampler settings its sweep chose live in
models/pretrained/fashion_unet/ (README.md there: how it was trained).
"""
import json
import pathlib

import ml_collections

from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.models import unet
from synthfactory.training.configs import classifier as classifier_configs
from synthfactory.training.configs import diffusion as diffusion_configs

SHIPPED_MODEL = pathlib.Path(unet.__file__).parent / "pretrained" / "fashion_unet"
VARIANTS = ("ci", "demo", "full")


def shipped_sampler():
  """The sampler settings recorded with the shipped model (its sweep's choice)."""
  path = SHIPPED_MODEL / "sampler.json"
  if not path.exists():  # A hard-coded fallback would silently drift from the sweep.
    raise FileNotFoundError(
        f"{path} is missing: the shipped model's sampler settings come from its sweep; "
        "restore it from git or rerun the command in models/pretrained/fashion_unet/"
        "README.md.")
  return json.loads(path.read_text())["sampler"]


def get_config(arg="demo"):
  if arg not in VARIANTS:
    raise ValueError(f"Unknown config variant {arg!r}; choose one of {VARIANTS}.")
  c = ml_collections.ConfigDict()
  c.name = f"fashion.py:{arg}"
  c.workdir = f"workdirs/fashion_{arg}"
  # Real data: Fashion-MNIST from its idx files (dir: "" = $FASHION_MNIST_DIR or the
  # Debian package's folder), registered as the TFDS dataset fashion_mnist_local.
  c.real = ml_collections.ConfigDict(dict(
      source="fashion_mnist", dir="", name="fashion_mnist_local", data_dir="",
      train_split="train", test_split="test"))
  # A trained checkpoint, or (checkpoint "") a model trained by the workflow.
  c.diffusion = ml_collections.ConfigDict(dict(checkpoint=str(SHIPPED_MODEL)))
  c.generate = generate_configs.get_config("fashion")
  c.generate.sampler.update(shipped_sampler())
  # 60,000 images = 80 shards × 750 = 10 batches of 75: no padded batches. A shard
  # is the unit of resumption: on a 2-core CPU one takes 6-13 min, so a killed run (or
  # one spread over several sittings) loses at most that much work a worker.
  c.generate.num_shards, c.generate.batch_size = 80, 75
  # Beam pipeline options of the generation job (DirectRunner here). Two worker
  # processes: one XLA:CPU process keeps only part of 2 cores busy with this small
  # U-Net; two make the job 1.31x faster (benchmarks/generation_workers_bench.py).
  c.beam_args = ("--runner=DirectRunner --direct_running_mode=multi_processing "
                 "--direct_num_workers=2")
  c.classifier = classifier_configs.get_config("fashion")
  # Epochs: `full` trains to convergence. The real-only classifier on the 60,000 real
  # images (results/data_scaling.json, training seed 0) reaches 92.05% at 10 epochs,
  # 92.83% at 20, 93.08% at 40, 93.45% at 60 (93.63% at seed 1) and 93.24% at 80:
  # 60 is where more epochs stop helping. The demo's 3,000 images keep 20 (its
  # recorded numbers).
  c.classifier.epochs = 60 if arg == "full" else 20
  c.conditions = ("real", "synthetic", "real+synthetic")
  # How the real+synthetic classifier draws its data: "concat" (one dataset, an epoch
  # a pass over the union; paper Table 4), "ratio" (synthetic_fraction of every
  # batch synthetic, an epoch a pass over the real data) or "pretrain" (the real data,
  # starting from the synthetic-only classifier's weights).
  # min_confidence p > 0: only the synthetic images the real-only classifier gives
  # probability ≥ p of their class join the real ones (pipelines/stages/classifiers.py).
  # distill w > 0: soft targets, (1 - w) · label + w · the real-only classifier's
  # probabilities at distill_temperature, and a control trained on the real images
  # alone with the same targets ("real (distilled)"). distill_teachers N > 1: the
  # teacher is the mean of N real-only classifiers (the extra N - 1 trained at the
  # next seeds, "real (seed k)").
  c.mixed = ml_collections.ConfigDict(dict(mix="concat", synthetic_fraction=0.0,
                                           min_confidence=0.0, distill=0.0,
                                           distill_temperature=1.0, distill_teachers=1))
  # extractor "": the real-only classifier of this run (FD-fmnist).
  c.evaluate = ml_collections.ConfigDict(dict(extractor="", pr_samples=10_000,
                                              is_splits=10))
  c.report = ml_collections.ConfigDict(dict(
      title=f"Embedded factory: Fashion-MNIST ({arg})", grid_per_class=8))

  if arg == "ci":
    c.real.update(train_split="train[:1000]", test_split="test[:500]")
    c.diffusion.checkpoint = ""
    c.diffusion.train = diffusion_configs.get_config("ci")
    c.diffusion.train.model.update(image_size=28, attention_resolutions=(14,))
    c.diffusion.train.update(num_steps=40, batch_size=16, checkpoint_every=20)
    c.generate.plan.multiplier = "0.001"  # 6 a class.
    c.generate.sampler.update(name="ddim", steps=4, guidance=2.0)
    c.generate.num_shards, c.generate.batch_size = 2, 16
    # 12 images: worker processes' start-up would cost more than they save.
    c.beam_args = "--runner=DirectRunner --direct_running_mode=in_memory"
    c.classifier = classifier_configs.get_config("ci")
    # 100 steps, a checkpoint every 10: a kill after the first checkpoint (the
    # integration test) lands well before the run could finish.
    c.classifier.update(num_steps=100, batch_size=16, checkpoint_every=10)
    c.evaluate.update(pr_samples=50, is_splits=2)
    c.report.grid_per_class = 3
  elif arg == "demo":
    c.real.train_split = "train[:3000]"
    c.generate.plan.multiplier = "0.05"
    c.generate.num_shards = 8  # 375 a shard: a kill loses at most one shard's work.
    c.classifier.batch_size = 128
    c.evaluate.pr_samples = 3000
  return c
