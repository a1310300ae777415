"""Tests of the offline ImageNet-1k vocabulary."""

import os

import numpy as np
import pytest

from illustration_tl.datasets import imagenet

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "imagenet",
                      "synset_words.txt")


def _reference_lines():
    path = SHARED if os.path.exists(SHARED) else None
    if path is None:  # the vendored copy is the reference when ../shared is absent
        from importlib import resources
        return resources.files("illustration_tl").joinpath(
            "data/synset_words.txt").read_text().splitlines()
    with open(path) as f:
        return f.read().splitlines()


def test_thousand_classes_in_order():
    lines = _reference_lines()
    classes = imagenet.classes()
    assert len(classes) == 1000
    for i, (c, line) in enumerate(zip(classes, lines)):
        wnid, names = line.split(" ", 1)
        assert (c.index, c.wnid, c.name) == (i, wnid, names.split(",")[0].strip())


def test_decode_top_k_matches_synset_words_for_every_index():
    lines = _reference_lines()
    scores = np.eye(1000, dtype=np.float32)  # row i peaks at class i
    decoded = imagenet.decode_top_k(scores, k=3)
    for i, top in enumerate(decoded):
        wnid, name, score = top[0]
        assert (wnid, name, score) == (lines[i].split(" ", 1)[0],
                                       lines[i].split(" ", 1)[1].split(",")[0].strip(), 1.0)
        assert len(top) == 3


def test_decode_top_k_order_and_shape_errors():
    scores = np.zeros((1, 1000))
    scores[0, [5, 7, 9]] = [0.2, 0.5, 0.3]
    assert [t[1] for t in imagenet.decode_top_k(scores, 3)[0]] == [
        imagenet.by_index(7).name, imagenet.by_index(9).name, imagenet.by_index(5).name]
    with pytest.raises(ValueError, match=r"\(batch, 1000\)"):
        imagenet.decode_top_k(np.zeros((2, 10)))


def test_lookups():
    assert imagenet.by_wnid("n03495258").name == "harp"
    assert imagenet.find("Harp").wnid == "n03495258"
    assert imagenet.find("mouth harp").wnid == "n03494278"
    assert imagenet.find("not a class") is None
    assert {c.wnid for c in imagenet.search("crane")} >= {"n02012849", "n03126707"}
    with pytest.raises(KeyError):
        imagenet.by_wnid("n00000000")
    with pytest.raises(IndexError):
        imagenet.by_index(1000)


PAPER_CLASSES = {
    "ambulance": "n02701002", "banjo": "n02787622", "cassette": "n02978881",
    "desk": "n03179701", "envelope": "n03291819", "goblet": "n03443371",
    "hammer": "n03481172", "harp": "n03495258", "hourglass": "n03544143",
    "jellyfish": "n01910747", "mask": "n03724870", "mosque": "n03788195",
    "pelican": "n02051845", "printer": "n04004767", "shovel": "n04208210",
    "stove": "n04330267", "syringe": "n04376876", "teapot": "n04398044",
    "toaster": "n04442312", "trombone": "n04487394", "umbrella": "n04507155",
    "vase": "n04522168", "zebra": "n02391049",
}


@pytest.mark.parametrize("name,wnid", sorted(PAPER_CLASSES.items()))
def test_paper_curated_classes_resolve(name, wnid):
    assert imagenet.find(name).wnid == wnid
