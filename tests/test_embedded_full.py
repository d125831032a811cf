"""results/embedded_full.py: mix flags, and merging a run's rows into its record."""
import importlib.util
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "results" / "embedded_full.py"
_SPEC = importlib.util.spec_from_file_location("embedded_full", _PATH)
embedded_full = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(embedded_full)


def test_mix_flags():
  assert embedded_full.mix_flags("concat") == ["--config.mixed.mix=concat"]
  assert embedded_full.mix_flags("ratio:0.25+filter:0.9") == [
      "--config.mixed.mix=ratio", "--config.mixed.synthetic_fraction=0.25",
      "--config.mixed.min_confidence=0.9"]


def test_rerun_scale_supersedes_its_row_and_keeps_the_others():
  old_1x, old_quarter = {"scale": "1×", "date": "a"}, {"scale": "0.25×", "date": "a"}
  first = embedded_full.merge_rows({}, [old_1x, old_quarter])
  assert first == {"results": [old_1x, old_quarter], "superseded": []}
  new_1x = {"scale": "1×", "date": "b"}
  second = embedded_full.merge_rows(first, [new_1x])
  assert second["results"] == [old_quarter, new_1x]
  assert second["superseded"] == [old_1x]
  newest_1x = {"scale": "1×", "date": "c"}
  third = embedded_full.merge_rows(second, [newest_1x])
  assert third["superseded"] == [old_1x, new_1x]  # Oldest first; nothing dropped.


def test_machine_names_the_processor_model():
  models = [line.split(":", 1)[1].strip()
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")]
  machine = embedded_full.machine()
  assert machine["processor"] == (models[0] if models else machine["processor"])
  assert machine["cpus"] >= 1 and machine["memory_gib"] > 0


def test_cpu_model_takes_the_first_model_name():
  cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n"
             "model name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: other\n")
  assert embedded_full.cpu_model(cpuinfo) == "AMD EPYC 7B13"
  assert embedded_full.cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") is None
