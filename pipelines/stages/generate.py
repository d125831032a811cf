"""Stage `generate`: the Beam generation job writes the class-balanced synthetic
dataset (ArrayRecord shards + manifest) from the `diffusion` stage's checkpoint.

The job itself resumes: after an interruption, shards that are complete and verified
are kept and only the rest are sampled again (beam_jobs/generation.py).
"""
import os
import shlex

from synthfactory.beam_jobs import generation
from synthfactory.models import samplers
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import common
from synthfactory.training import checkpoints


def job_config(config, checkpoint):
  job = config.generate.copy_and_resolve_references()
  job.checkpoint = checkpoint
  return job


def make(config):

  def inputs():
    generate = common.plain(config.generate)
    # Samplers as recorded (SamplerConfig.to_dict): an option left at its default does
    # not change the stage's identity from runs made before the option existed.
    for stage in [generate, *generate["sr_stages"]]:
      stage["sampler"] = samplers.SamplerConfig.from_dict(stage["sampler"]).to_dict()
    return {"generate": generate, "beam_args": config.beam_args}

  def run(stage_dir, upstream):
    job = job_config(config, upstream["diffusion"]["checkpoint"])
    output_dir = os.path.join(stage_dir, "dataset")
    # The folder is this stage's own: the same dataset resumes (verified shards are
    # kept), a dataset of earlier inputs (the runner reruns a changed stage) is stale
    # and replaced.
    manifest = generation.run(job, output_dir, overwrite=True,
                              beam_args=shlex.split(config.beam_args))
    return {"dataset_dir": output_dir, "name": manifest["name"],
            "split": manifest["split"], "num_images": manifest["num_records"],
            "multiplier": manifest["plan"]["multiplier"],
            "resolution": manifest["image"]["shape"][0],
            "manifest_sha256": common.path_sha256(
                os.path.join(output_dir, "manifest.json")),
            "sampler": manifest["sampler"], "seed": manifest["seed"]}

  def progress(stage_dir):
    return generation.job_progress(os.path.join(stage_dir, "dataset"))

  return runner.Stage("generate", run, inputs, progress)


def missing(config):
  """Super-resolution checkpoints the cascade needs that are absent or unreadable."""
  found = []
  for k, sr in enumerate(config.generate.sr_stages, start=1):
    if sr.init:
      continue  # Freshly initialised weights (tests only).
    if not sr.checkpoint:
      found.append(f"super-resolution stage {k}: no checkpoint; set --config.generate."
                   f"sr_stages.{k - 1}.checkpoint=<its training run's workdir>.")
      continue
    try:
      checkpoints.load_model_config(sr.checkpoint)
    except checkpoints.CheckpointError as e:
      found.append(f"super-resolution stage {k}: {e}")
  return found
