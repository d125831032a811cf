"""Class plans: exact largest-remainder quotas, ImageNet counts, JSON, checks, errors."""
import fractions
import math

import numpy as np
import pytest

from synthfactory.datasets import class_plan


@pytest.fixture(scope="module")
def imagenet_1x():
  return class_plan.imagenet2012(1)


def test_imagenet_counts_are_shipped(imagenet_1x):
  counts = imagenet_1x.counts
  assert imagenet_1x.num_classes == 1000 and imagenet_1x.total == 1_281_167
  assert counts.min() == 732 and counts.max() == 1300
  assert imagenet_1x.classes[0].id == "n01440764"
  assert len({c.id for c in imagenet_1x.classes}) == 1000


def test_imagenet_readable_names(imagenet_1x):
  names, ids = class_plan.imagenet2012_names(), class_plan.imagenet2012_ids()
  assert len(names) == len(set(names)) == 1000  # TFDS ClassLabel needs unique names.
  assert ids == sorted(ids) and len(set(ids)) == 1000  # ImageNet-2012 label order.
  assert (names[0], names[1], names[207], names[999]) == (
      "tench", "goldfish", "Golden Retriever", "toilet paper")
  assert (ids[207], ids[999]) == ("n02099601", "n15075141")
  assert imagenet_1x.names == names and [c.id for c in imagenet_1x.classes] == ids
  # The two names CLIP's list repeats, made unique with their WordNet lemma.
  assert (names[657], names[744], names[836], names[837]) == (
      "missile", "projectile", "sunglass", "sunglasses")


def test_class_prompts_are_the_names():
  from synthfactory.models import text_embeddings  # pylint: disable=g-import-not-at-top
  names = class_plan.imagenet2012_names()
  assert text_embeddings.class_prompts(names)[:2] == ["tench", "goldfish"]
  assert text_embeddings.class_prompts(names[:1], "a photo of a {}.") == [
      "a photo of a tench."]


@pytest.mark.parametrize("multiplier", [1, 2, 4, 10, 0.5, 0.37, 2.5, "1/3", 0.001])
def test_quotas_add_up_exactly(imagenet_1x, multiplier):
  plan = class_plan.imagenet2012(multiplier)
  n = fractions.Fraction(str(multiplier))
  assert plan.total == math.floor(n * 1_281_167 + fractions.Fraction(1, 2))
  exact = [n * c.base_count for c in imagenet_1x.classes]
  # Largest remainder: every quota is the floor or the ceiling of its exact share.
  assert all(math.floor(e) <= q <= math.ceil(e) for e, q in zip(exact, plan.counts))


def test_largest_remainder_ties_go_to_lower_labels():
  assert class_plan.quotas([1, 1, 1], 0.5) == [1, 1, 0]        # 1.5 → 2 images.
  assert class_plan.quotas([3, 5, 7], 0.5) == [2, 3, 3]        # 1.5, 2.5, 3.5 → 8.
  assert class_plan.quotas([10, 0, 7], 10) == [100, 0, 70]


@pytest.mark.parametrize("bad", [0, -1, 10.5, 11, "abc", float("nan"), float("inf"),
                                 True, None])
def test_bad_multiplier_is_refused(bad):
  with pytest.raises(class_plan.ClassPlanError, match="[Mm]ultiplier"):
    class_plan.uniform(3, 10, bad)


def test_multiplier_written_exactly():
  assert class_plan.uniform(2, 10, 0.1).multiplier == "0.1"
  assert class_plan.uniform(2, 10, "4x").multiplier == "4"
  assert class_plan.uniform(2, 10, 10).total == 200


def test_from_labels_uses_the_histogram():
  plan = class_plan.from_labels([0, 0, 0, 2, 2, 1], 2, source="toy",
                                names=["a", "b", "c"])
  assert plan.counts.tolist() == [6, 2, 4] and plan.names == ["a", "b", "c"]


def test_json_round_trip_is_byte_stable(tmp_path, imagenet_1x):
  plan = class_plan.imagenet2012(0.5)
  plan.write(tmp_path / "plan.json")
  again = class_plan.ClassPlan.read(tmp_path / "plan.json")
  assert again == plan and again.to_json() == plan.to_json()
  assert again != imagenet_1x


def test_read_refuses_edited_totals(tmp_path):
  plan = class_plan.uniform(2, 3)
  (tmp_path / "p.json").write_text(plan.to_json().replace('"total": 6', '"total": 7'))
  with pytest.raises(class_plan.ClassPlanError, match="total 7"):
    class_plan.ClassPlan.read(tmp_path / "p.json")
  with pytest.raises(class_plan.ClassPlanError, match="No class plan"):
    class_plan.ClassPlan.read(tmp_path / "missing.json")


def test_check_names_each_problem():
  plan = class_plan.uniform(3, 2)
  labels, indices = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1])
  plan.check(labels, indices)
  assert plan.problems(labels[::-1], indices[::-1]) == []
  found = plan.problems([0, 0, 1, 1, 2], [0, 0, 0, 1, 5])
  assert any("more than once" in p for p in found)
  assert any("outside their class quota" in p for p in found)
  assert any("class 2" in p and "quota is 2" in p for p in found)
  with pytest.raises(class_plan.ClassPlanError, match="do not meet the class plan"):
    plan.check([0, 1, 2], [0, 0, 0])
