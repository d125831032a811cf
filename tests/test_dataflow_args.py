"""Dataflow readiness: the workers get synthfactory (--setup_file defaults)."""
import pytest

from synthfactory.beam_jobs import generate

_DATAFLOW = ["--runner=DataflowRunner", "--project=p", "--region=us-central1",
             "--temp_location=gs://b/tmp"]


@pytest.mark.parametrize("runner", ["--runner=DataflowRunner", "--runner=dataflow"])
def test_dataflow_defaults_setup_file_to_the_repo(runner):
  args, note = generate.with_dataflow_defaults([runner] + _DATAFLOW[1:])
  assert args[-1] == f"--setup_file={generate.SETUP_FILE}"
  assert generate.SETUP_FILE.is_file() and "setup_file" in note


@pytest.mark.parametrize("given", ["--setup_file=/x/setup.py",
                                   "--sdk_container_image=gcr.io/p/worker:1"])
def test_a_given_setup_file_or_image_is_kept(given):
  assert generate.with_dataflow_defaults(_DATAFLOW + [given]) == (
      _DATAFLOW + [given], None)


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"],
                                  ["--direct_num_workers=2"]])
def test_other_runners_are_untouched(args):
  assert generate.with_dataflow_defaults(args) == (args, None)


def test_no_checkout_says_what_to_pass(tmp_path):
  args, note = generate.with_dataflow_defaults(
      _DATAFLOW, setup_file=tmp_path / "setup.py")
  assert args == _DATAFLOW and "--sdk_container_image" in note
