"""The factory's workflow: the stages in order, and what a config needs to run.

  real_data → diffusion → generate → build → classifiers → evaluate → report
"""
from synthfactory.pipelines.stages import build
from synthfactory.pipelines.stages import classifiers
from synthfactory.pipelines.stages import diffusion
from synthfactory.pipelines.stages import evaluate
from synthfactory.pipelines.stages import generate
from synthfactory.pipelines.stages import real_data
from synthfactory.pipelines.stages import report

STAGES = ("real_data", "diffusion", "generate", "build", "classifiers", "evaluate",
          "report")


def stages(config, workflow_info):
  """The runner.Stage list of a workflow config; workflow_info describes the run
  (config spec, command, workdir) for the report."""
  return [real_data.make(config), diffusion.make(config), generate.make(config),
          build.make(config), classifiers.make(config), evaluate.make(config),
          report.make(config, workflow_info)]


def missing(config):
  """Everything the config needs that is not there, as messages naming the fix;
  empty when the workflow can run."""
  return (real_data.missing(config) + diffusion.missing(config)
          + generate.missing(config) + build.missing(config)
          + classifiers.missing(config)
          + evaluate.missing(config))
