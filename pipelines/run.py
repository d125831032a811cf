r"""Runs the data factory's workflow end to end, resumably.

  python -m synthfactory.pipelines.run --config=pipelines/configs/fashion.py:demo

Stages, each in `<workdir>/<NN>_<stage>/` with a COMPLETE.json marker: real_data →
diffusion → generate → build → classifiers → evaluate → report. Rerunning the same
command skips complete stages whose inputs are unchanged and resumes an interrupted
one (its job keeps what it finished: checkpoints, verified shards). --from_stage re-runs
a stage and those after it; --only_stage runs one stage. --check only lists what the
config needs that is missing (data, checkpoints, weights), as does every run before it
starts. --status shows each stage's state in the workdir (complete, stale, started with
its progress: shards and images generated, classifiers' steps) and runs nothing.
"""
import shlex
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from synthfactory.pipelines import runner
from synthfactory.pipelines import workflow
from synthfactory.training import checkpoints

_CONFIG = config_flags.DEFINE_config_file("config", None, "Workflow config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Root of the stage directories "
                               "(default: the config's workdir).")
_FROM = flags.DEFINE_enum("from_stage", None, workflow.STAGES,
                          "Re-run this stage and every later one.")
_ONLY = flags.DEFINE_enum("only_stage", None, workflow.STAGES, "Run only this stage "
                          "(the earlier ones must be complete).")
_CHECK = flags.DEFINE_bool("check", False, "List what is missing, run nothing.")
_STATUS = flags.DEFINE_bool("status", False, "Show each stage's state in the workdir, "
                            "run nothing.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  checkpoints.quiet_orbax_logs()
  missing = workflow.missing(config)
  if missing:
    sys.exit(f"The workflow {config.name} cannot run here; {len(missing)} thing(s) "
             "missing:\n  - " + "\n  - ".join(missing))
  if _CHECK.value:
    print(f"{config.name}: everything the workflow needs is there.")
    return
  workdir = _WORKDIR.value or config.workdir
  if _STATUS.value:
    print(f"{config.name} in {workdir}:")
    for name, state in runner.Runner(workflow.stages(config, {}), workdir).status():
      print(f"  {name:12s} {state}")
    return
  info = {"config": config.name, "workdir": workdir,
          "command": " ".join(shlex.quote(a) for a in ["python", "-m",
                                                      "synthfactory.pipelines.run",
                                                      *sys.argv[1:]])}
  try:
    records = runner.Runner(workflow.stages(config, info), workdir).run(
        from_stage=_FROM.value, only_stage=_ONLY.value)
  except runner.WorkflowError as e:
    sys.exit(f"error: {e}")
  report = records.get("report")
  if report:
    logging.info("report: %s (and %s)", report["markdown"], report["html"])
    print("\n".join(["", f"Report: {report['html']}", *report["summary"]]))


if __name__ == "__main__":
  app.run(main)
