"""The resumable workflow runner on small real stages (files in, files out)."""
import json
import os
import pathlib

import pytest

from synthfactory.pipelines import runner as runner_lib


class Workflow:
  """prepare → double → report, counting how often each stage ran."""

  def __init__(self, workdir, value=3, crash_in=None):
    self.calls = {"prepare": 0, "double": 0, "report": 0}
    self.value, self.crash_in = value, crash_in
    self.runner = runner_lib.Runner([
        runner_lib.Stage("prepare", self._prepare, lambda: {"value": self.value}),
        runner_lib.Stage("double", self._double, progress=self._double_progress),
        runner_lib.Stage("report", self._report),
    ], str(workdir))

  def _count(self, name):
    self.calls[name] += 1
    if self.crash_in == name:
      raise KeyboardInterrupt(f"killed in {name}")

  def _prepare(self, out_dir, upstream):
    self._count("prepare")
    path = os.path.join(out_dir, "value.txt")
    with open(path, "w") as f:
      f.write(str(self.value))
    return {"path": path}

  def _double(self, out_dir, upstream):
    self._count("double")
    with open(upstream["prepare"]["path"]) as f:
      return {"doubled": 2 * int(f.read())}

  def _double_progress(self, out_dir):
    path = pathlib.Path(out_dir, "partial.txt")
    return path.read_text() if path.exists() else ""

  def _report(self, out_dir, upstream):
    self._count("report")
    return {"text": f"result {upstream['double']['doubled']}"}


def test_runs_in_order_and_writes_markers(tmp_path):
  wf = Workflow(tmp_path)
  records = wf.runner.run()
  assert records["report"] == {"text": "result 6"}
  marker = json.loads((tmp_path / "02_double" / runner_lib.MARKER).read_text())
  assert marker["outputs"] == {"doubled": 6} and marker["code_version"]


def test_rerun_skips_complete_stages(tmp_path):
  Workflow(tmp_path).runner.run()
  wf = Workflow(tmp_path)
  assert wf.runner.run()["report"] == {"text": "result 6"}
  assert wf.calls == {"prepare": 0, "double": 0, "report": 0}


def test_relative_workdir_records_absolute_paths(tmp_path, monkeypatch):
  """Stages record paths; named relatively or from elsewhere, a workdir is the same."""
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path)
  Workflow("wf").runner.run()
  marker = json.loads((tmp_path / "wf" / "01_prepare" / runner_lib.MARKER).read_text())
  assert marker["outputs"]["path"] == str(tmp_path / "wf" / "01_prepare" / "value.txt")
  monkeypatch.chdir(tmp_path / "elsewhere")
  wf = Workflow("../wf")
  assert wf.runner.run()["report"] == {"text": "result 6"}
  assert wf.calls == {"prepare": 0, "double": 0, "report": 0}


def test_changed_input_reruns_the_stage_and_everything_after(tmp_path):
  Workflow(tmp_path).runner.run()
  wf = Workflow(tmp_path, value=5)
  assert wf.runner.run()["report"] == {"text": "result 10"}
  assert wf.calls == {"prepare": 1, "double": 1, "report": 1}


def test_interrupted_run_resumes_without_redoing_complete_stages(tmp_path):
  wf = Workflow(tmp_path, crash_in="double")
  with pytest.raises(KeyboardInterrupt):
    wf.runner.run()
  assert not (tmp_path / "02_double" / runner_lib.MARKER).exists()
  wf = Workflow(tmp_path)
  assert wf.runner.run()["report"] == {"text": "result 6"}
  assert wf.calls == {"prepare": 0, "double": 1, "report": 1}


def test_from_stage_and_only_stage(tmp_path):
  Workflow(tmp_path).runner.run()
  wf = Workflow(tmp_path)
  wf.runner.run(from_stage="double")
  assert wf.calls == {"prepare": 0, "double": 1, "report": 1}
  wf = Workflow(tmp_path)
  assert wf.runner.run(only_stage="report")["report"] == {"text": "result 6"}
  assert wf.calls == {"prepare": 0, "double": 0, "report": 1}


def test_status_tells_each_stage_state_and_runs_nothing(tmp_path):
  wf = Workflow(tmp_path)
  assert wf.runner.status() == [("prepare", "not started"),
                                ("double", "waits for prepare"),
                                ("report", "waits for prepare")]
  with pytest.raises(KeyboardInterrupt):
    Workflow(tmp_path, crash_in="double").runner.run()
  (tmp_path / "02_double" / "partial.txt").write_text("3/4 chunks")
  states = dict(wf.runner.status())
  assert states["prepare"].startswith("complete in 0m00s (")
  assert states["double"] == "started, not complete; a run resumes it: 3/4 chunks"
  assert states["report"] == "waits for double"
  Workflow(tmp_path).runner.run()
  assert all(s.startswith("complete") for _, s in wf.runner.status())
  changed = dict(Workflow(tmp_path, value=5).runner.status())
  assert changed["prepare"].startswith("stale: its inputs changed")
  assert changed["double"] == ("waits for prepare (a run of earlier inputs is "
                               "complete; it will re-run)")
  assert wf.calls == {"prepare": 0, "double": 0, "report": 0}


def test_bad_requests(tmp_path):
  wf = Workflow(tmp_path)
  with pytest.raises(runner_lib.WorkflowError, match="needs 'prepare' complete"):
    wf.runner.run(only_stage="double")
  with pytest.raises(runner_lib.WorkflowError, match="not a stage of this workflow"):
    wf.runner.run(from_stage="train")
  with pytest.raises(runner_lib.WorkflowError, match="not both"):
    wf.runner.run(from_stage="double", only_stage="report")
  with pytest.raises(runner_lib.WorkflowError, match="unique"):
    runner_lib.Runner([runner_lib.Stage("a", None), runner_lib.Stage("a", None)], "x")
