"""The paper's full run (Azizi et al. 2023): the same workflow at ImageNet scale.

  python -m synthfactory.pipelines.run --config=pipelines/configs/imagenet.py:1024x_1x \
      --config.real.data_dir=<TFDS dir with imagenet2012 prepared as ArrayRecord> \
      --config.diffusion.checkpoint=<fine-tuned 64 px base model> \
      --config.generate.sr_stages.0.checkpoint=<64→256 model> \
      --config.generate.sr_stages.1.checkpoint=<256→1024 model> \
      --config.evaluate.extractor=inception:<converted FID Inception .npz>

Variants `<res>x_<N>x`: 64x (base only), 256x (base → 256), 1024x (the full
cascade), N = 1 … 10 times ImageNet's per-class train counts (Table 4). On a machine
without ImageNet, the checkpoints or the FID weights, the run (or --check) lists
exactly what is missing and stops. Sampler settings are the paper's chosen ones (§4.2,
DESIGN §5): base guidance 1.25 with DDPM and log-variance mix 0; 64→256 DDPM guidance
1.0, mix 0.1, noise-conditioning aug 0; 256→1024 DDIM 32 steps. Classifiers follow
Table 3 (ResNet-50, Table A.1 recipe) on real, synthetic and real+synthetic data.
"""
import ml_collections

from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.pipelines.configs import fashion
from synthfactory.training.configs import classifier as classifier_configs

RESOLUTIONS = (64, 256, 1024)


def get_config(arg="1024x_1x"):
  try:
    res, mult = arg.split("_")
    res, mult = int(res.rstrip("x")), int(mult.rstrip("x"))
    if res not in RESOLUTIONS or not 1 <= mult <= 10:
      raise ValueError
  except ValueError:
    raise ValueError(f"Unknown config variant {arg!r}; use <res>x_<N>x with res in "
                     f"{RESOLUTIONS} and N in 1 … 10, e.g. 1024x_4x.") from None
  c = fashion.get_config("full")  # The same blocks, set to ImageNet below.
  c.name, c.workdir = f"imagenet.py:{arg}", f"workdirs/imagenet_{arg}"
  c.real.update(source="tfds", name="imagenet2012", train_split="train",
                test_split="validation")
  c.diffusion = ml_collections.ConfigDict(dict(checkpoint=""))
  c.generate = generate_configs.get_config("fashion")
  c.generate.name = "synthetic_imagenet"
  c.generate.plan.update(source="imagenet2012", multiplier=str(mult))
  c.generate.sampler.update(name="ddpm", steps=1000, guidance=1.25, log_var_mix=0.0)
  stages = []
  if res >= 256:
    stages.append(generate_configs.sr_stage(name="ddpm", steps=1000, guidance=1.0,
                                            log_var_mix=0.1, aug_level=0.0))
  if res == 1024:
    stages.append(generate_configs.sr_stage(name="ddim", steps=32, guidance=1.0))
  c.generate.sr_stages = tuple(stages)
  c.generate.num_shards, c.generate.batch_size = 1024 * mult, 64
  c.generate.image.update(encoding="jpeg", jpeg_quality=95)
  c.beam_args = "--runner=DataflowRunner"
  c.classifier = classifier_configs.get_config("resnet50")
  c.mixed.update(mix="concat", synthetic_fraction=0.0)  # Table 4: the union.
  c.evaluate = ml_collections.ConfigDict(dict(extractor="inception:", pr_samples=10_000,
                                              is_splits=10))
  c.report.update(title=f"Synthetic ImageNet ({arg}): Azizi et al. 2023 reproduced",
                  grid_per_class=4)
  return c
