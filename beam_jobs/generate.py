r"""Generates a synthetic dataset: ArrayRecord shards, class plan and manifest.

  python -m synthfactory.beam_jobs.generate \
      --config=beam_jobs/configs/generate.py:fashion \
      --config.checkpoint=<diffusion run workdir> --output_dir=<folder> \
      [--overwrite] [--dry_run] [Beam options, e.g. --direct_running_mode=
      multi_processing --direct_num_workers=2, or --runner=DataflowRunner
      --project=... --region=... --temp_location=gs://... (README.md)]

On Dataflow with neither --setup_file nor --sdk_container_image, --setup_file
defaults to the repo's setup.py so the workers install synthfactory.

Re-running into the same folder with the same config resumes: complete, verified
shards are kept and the rest rewritten, with bytes identical to an uninterrupted run.
A folder holding anything else is refused unless --overwrite. Arguments that are
neither this job's flags nor Beam pipeline options are refused, since Beam itself only
warns and drops them.
"""
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging
from apache_beam.options import pipeline_options
from ml_collections import config_flags

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs import shard_worker
from synthfactory.datasets import class_plan
from synthfactory.training import checkpoints

_CONFIG = config_flags.DEFINE_config_file("config", None, "Generation config file.",
                                          lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Dataset folder: local or gs://bucket/path.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace a different dataset in --output_dir.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan, shard count and "
                             "estimated cost; sample and write nothing.")

_INPUT_ERRORS = (generation.GenerateError, class_plan.ClassPlanError,
                 checkpoints.CheckpointError, shard_worker.GenerationError)
# The repo's setup.py, when running from a checkout (pip install -e .).
SETUP_FILE = pathlib.Path(__file__).resolve().parent.parent / "setup.py"


def with_dataflow_defaults(beam_args, setup_file=SETUP_FILE):
  """`beam_args`, plus --setup_file=<repo setup.py> on Dataflow when neither it nor
  --sdk_container_image is given: else the workers lack synthfactory and every bundle
  fails on import. Returns (args, a note to log or None)."""
  beam_args = list(beam_args)
  options = pipeline_options.PipelineOptions(beam_args)
  runner = options.view_as(pipeline_options.StandardOptions).runner or ""
  if runner.lower().removesuffix("runner") != "dataflow":
    return beam_args, None
  if (options.view_as(pipeline_options.SetupOptions).setup_file or
      options.view_as(pipeline_options.WorkerOptions).sdk_container_image):
    return beam_args, None
  setup_file = pathlib.Path(setup_file)
  if not setup_file.is_file():
    return beam_args, (
        f"Dataflow workers need synthfactory, and {setup_file} does not exist "
        "(not a checkout): pass --setup_file=<repo>/setup.py or "
        "--sdk_container_image=<an image from docker/>.")
  return beam_args + [f"--setup_file={setup_file}"], (
      f"Dataflow: workers install synthfactory from --setup_file={setup_file} "
      "(pass --sdk_container_image=<an image from docker/> for GPU workers).")



def main(argv):
  config = _CONFIG.value
  try:
    unknown = generation.unknown_args(argv[1:])
    if unknown:
      raise generation.GenerateError(
          f"Unknown argument(s) {' '.join(unknown)}: neither a flag of this job "
          "(see --helpfull) nor a Beam pipeline option.")
    if _DRY_RUN.value:
      print(generation.dry_run_report(config))
      return
    if not _OUTPUT_DIR.value:
      raise generation.GenerateError("--output_dir is required.")
    beam_args, note = with_dataflow_defaults(argv[1:])
    if note:
      logging.warning(note)
    manifest = generation.run(config, _OUTPUT_DIR.value, overwrite=_OVERWRITE.value,
                              beam_args=beam_args)
  except _INPUT_ERRORS as e:
    sys.exit(f"generate: {e}")  # One clear message, not a traceback.
  print(f"wrote {manifest['num_records']} images in {len(manifest['shards'])} shards "
        f"to {_OUTPUT_DIR.value}")


def _parse(argv):
  # Flags we do not define are Beam pipeline options, handed to main (which refuses
  # those Beam does not know either).
  try:
    return flags.FLAGS(argv, known_only=True)
  except (ValueError, flags.Error) as e:
    # E.g. an unknown config variant: get_config raises while --config is parsed,
    # and config_flags puts the whole traceback into the message; keep its last line.
    lines = [line for line in str(e).splitlines() if line.strip()]
    sys.exit(f"generate: {lines[0].rstrip(':')}: {lines[-1]}" if len(lines) > 1
             else f"generate: {e}")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=_parse)
