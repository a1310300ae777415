"""Every class of at least MIN_IMAGES_FOR_TEST images keeps a test image (issue 22)."""

from __future__ import annotations

from illustration_tl.datasets import splits
from illustration_tl.datasets.illustrations import split_assignment


def _hashes(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def test_a_class_without_test_images_gets_the_group_nearest_the_test_range():
    # Five images whose hashes all land outside test (searched, not made up).
    found = [h for h in _hashes("a", 400) if splits.assign(h) != "test"][:5]
    names = [f"small/{i}.png" for i in range(5)]
    hash_of = dict(zip(names, found))
    hash_of["other/copy.png"] = found[2]          # a copy of one of them in another class
    class_of = {n: n.split("/")[0] for n in hash_of}
    final = {n: splits.assign(h) for n, h in hash_of.items()}
    moved = split_assignment.ensure_test_image(final, class_of, hash_of)
    pick = max(found, key=splits.unit_interval)
    assert {n for n, s in final.items() if s == "test"} == {
        n for n, h in hash_of.items() if h == pick}
    assert moved == sum(1 for h in hash_of.values() if h == pick)


def test_small_classes_and_classes_with_a_test_image_are_left_alone():
    few = [h for h in _hashes("b", 400) if splits.assign(h) != "test"][:4]
    tested = [h for h in _hashes("c", 400) if splits.assign(h) == "test"][:1] + few
    hash_of = {f"few/{i}.png": h for i, h in enumerate(few)}
    hash_of.update({f"tested/{i}.png": h for i, h in enumerate(tested)})
    class_of = {n: n.split("/")[0] for n in hash_of}
    final = {n: splits.assign(h) for n, h in hash_of.items()}
    before = dict(final)
    assert split_assignment.ensure_test_image(final, class_of, hash_of) == 0
    assert final == before
