"""The resumable workflow runner: stages in order, each in its own directory.

A stage is complete when its directory holds `COMPLETE.json`, written last (atomically)
with the hash of everything the stage depended on: its own inputs (a JSON-able dict:
config values, file hashes) and the output records of the stages before it. A re-run
skips a complete stage whose inputs hash is unchanged and re-runs the rest; changing a
stage's inputs therefore re-runs it and, through the chained hashes, every stage after
it. An interrupted stage has no marker and simply runs again: the jobs behind stages
resume their own work (checkpoints, verified shards), so nothing complete is redone.
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Optional

from absl import logging

import synthfactory
from synthfactory.beam_jobs import progress

MARKER = "COMPLETE.json"


class WorkflowError(ValueError):
  """A workflow request that cannot run (unknown stage, missing upstream output)."""


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of the workflow.

  run(stage_dir, upstream) does the work in stage_dir and returns a JSON-able record
  of its outputs (paths, metrics); upstream maps earlier stage names to their records.
  inputs() describes what the stage depends on beyond the earlier stages' outputs.
  progress(stage_dir) says how far an unfinished run has got, from its files ("" when
  there is nothing to say), for `Runner.status`.
  """
  name: str
  run: Callable[[str, dict], Optional[dict]]
  inputs: Callable[[], dict] = dict
  progress: Callable[[str], str] = lambda stage_dir: ""


def _digest(obj):
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                        ).hexdigest()


def _write_json_atomic(path, obj):
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=str)
  os.replace(tmp, path)


class Runner:
  """Runs `stages` (in order) under `workdir`, skipping what is complete."""

  def __init__(self, stages, workdir):
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
      raise WorkflowError(f"Stage names must be unique, got {names}.")
    # Absolute: stages record their paths (datasets, keep files) in their outputs and
    # in their jobs' configs, so the same workdir named relatively, or from another
    # directory, must give the same records, not stale stages and retrained runs.
    self.stages, self.workdir = list(stages), os.path.abspath(workdir)

  def stage_dir(self, stage):
    index = self.stages.index(stage)
    return os.path.join(self.workdir, f"{index + 1:02d}_{stage.name}")

  def _index(self, name, flag):
    for i, stage in enumerate(self.stages):
      if stage.name == name:
        return i
    raise WorkflowError(f"--{flag}={name!r} is not a stage of this workflow; stages: "
                        f"{[s.name for s in self.stages]}.")

  def read_marker(self, stage):
    try:
      with open(os.path.join(self.stage_dir(stage), MARKER)) as f:
        return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
      return None

  def status(self):
    """Each stage's state, without running anything: [(stage name, state)], the state
    "complete …", "stale …" (its inputs changed: it will re-run), "started …" (with
    the stage's own progress), "not started" or "waits for <stage>"."""
    states, hashes, blocked = [], [], None
    for stage in self.stages:
      marker = self.read_marker(stage)
      if blocked:  # Its inputs hash chains the unfinished stage's: not known yet.
        state = f"waits for {blocked}" + (" (a run of earlier inputs is complete; it "
                                          "will re-run)" if marker else "")
        states.append((stage.name, state))
        continue
      inputs_hash = _digest({"stage": stage.inputs(), "upstream": hashes})
      if marker is not None and marker["inputs_hash"] == inputs_hash:
        took = progress.duration(marker["seconds"])
        states.append((stage.name, f"complete in {took} ({marker['finished']})"))
        hashes = hashes + [marker["hash"]]
        continue
      blocked = stage.name
      stage_dir = self.stage_dir(stage)
      if marker is not None:
        state = "stale: its inputs changed since it completed; it will re-run"
      elif os.path.isdir(stage_dir):
        detail = stage.progress(stage_dir)
        state = "started, not complete; a run resumes it" + (
            f": {detail}" if detail else "")
      else:
        state = "not started"
      states.append((stage.name, state))
    return states

  def run(self, from_stage=None, only_stage=None):
    """Runs the workflow; returns {stage name: its output record}.

    from_stage: re-run this stage and every later one even if complete.
    only_stage: run just this stage (its upstream stages must be complete).
    """
    if from_stage and only_stage:
      raise WorkflowError("Pass --from_stage or --only_stage, not both.")
    first = self._index(from_stage, "from_stage") if from_stage else len(self.stages)
    only = self._index(only_stage, "only_stage") if only_stage else None
    records, hashes = {}, []
    for i, stage in enumerate(self.stages):
      inputs = {"stage": stage.inputs(), "upstream": hashes}
      inputs_hash = _digest(inputs)
      marker = self.read_marker(stage)
      fresh = marker is not None and marker["inputs_hash"] == inputs_hash
      label = f"stage {i + 1}/{len(self.stages)} {stage.name}"
      if only is not None and i != only:
        if i < only and not fresh:
          raise WorkflowError(
              f"--only_stage={only_stage} needs {stage.name!r} complete and up to "
              f"date; run the workflow without --only_stage (or --only_stage="
              f"{stage.name}) first.")
        if i < only:
          records[stage.name], hashes = marker["outputs"], hashes + [marker["hash"]]
        continue
      if fresh and i < first and only is None:
        logging.info("%s: complete, skipped (%s)", label, self.stage_dir(stage))
        records[stage.name], hashes = marker["outputs"], hashes + [marker["hash"]]
        continue
      logging.info("%s: running in %s", label, self.stage_dir(stage))
      os.makedirs(self.stage_dir(stage), exist_ok=True)
      marker_path = os.path.join(self.stage_dir(stage), MARKER)
      if os.path.exists(marker_path):
        os.remove(marker_path)  # Stale until this run completes.
      start = time.time()
      outputs = stage.run(self.stage_dir(stage), dict(records)) or {}
      seconds = time.time() - start
      record = {"inputs": inputs, "inputs_hash": inputs_hash, "outputs": outputs,
                "hash": _digest([inputs_hash, outputs]), "seconds": round(seconds, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "code_version": synthfactory.__version__}
      _write_json_atomic(marker_path, record)
      logging.info("%s: done in %.1f s", label, seconds)
      records[stage.name], hashes = outputs, hashes + [record["hash"]]
    return records
