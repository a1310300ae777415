"""Mapping clip-art file names to ImageNet classes (paper §4.1).

The paper builds its noisy training set without annotation: "we tokenize the
name of the image and the name of each class, remove stop words, and copy the
image into every class that shares a word with it". :class:`NameMapper`
implements exactly that rule by default, and returns the words that matched
so the rule's ambiguity stays visible (``crane`` is a bird and a machine,
``hot-dog`` lands in the hotdog class and in every class with ``dog`` in a
synonym).

Every refinement is opt-in (:class:`MappingOptions`): a minimum token length,
plural folding, ignore lists (author-name fragments, icon style words, colour
words) and a phrase mode in which a synonym matches only if all of its words
occur in the name.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re
from importlib import resources
from typing import Iterable, Sequence

from illustration_tl.datasets import imagenet

# A run of letters (any script): digits, underscores and punctuation separate.
_LETTER_RUN = re.compile(r"[^\W\d_]+")

IGNORE_LISTS = ("style", "colors", "openclipart_authors")


def _read_word_list(name: str) -> frozenset[str]:
    text = resources.files("illustration_tl").joinpath(f"data/{name}").read_text("utf-8")
    return frozenset(w.strip().lower() for w in text.splitlines()
                     if w.strip() and not w.startswith("#"))


@functools.cache
def stop_words() -> frozenset[str]:
    """The shipped English stop-word list (``data/stop_words.txt``, NLTK's 179)."""
    return _read_word_list("stop_words.txt")


@functools.cache
def ignore_list(name: str) -> frozenset[str]:
    """A shipped ignore list: ``style``, ``colors`` or ``openclipart_authors``."""
    if name not in IGNORE_LISTS:
        raise ValueError(f"unknown ignore list {name!r}; choose from {', '.join(IGNORE_LISTS)}")
    return _read_word_list(f"ignore_{name}.txt")


def strip_extension(file_name: str) -> str:
    """``dir/dog-running.png`` -> ``dog-running``; keeps names without extension."""
    base = os.path.basename(file_name.replace("\\", "/"))
    stem, ext = os.path.splitext(base)
    return stem if ext and 1 < len(ext) <= 5 and ext[1:].isalnum() else base


def tokenize(text: str) -> list[str]:
    """Splits ``text`` into lowercase words on non-letters, digits and camelCase.

    ``CraneBird_02`` -> ``['crane', 'bird']``; ``hot-dog`` -> ``['hot', 'dog']``.
    Never raises, whatever the input.
    """
    return [w.lower() for run in _LETTER_RUN.findall(text) for w in _split_camel(run)]


def _split_camel(run: str) -> list[str]:
    """``craneBird`` -> crane|Bird, ``HTTPServer`` -> HTTP|Server (any script)."""
    words, start = [], 0
    for i in range(1, len(run)):
        prev, cur = run[i - 1], run[i]
        nxt = run[i + 1] if i + 1 < len(run) else ""
        lower_upper = prev.islower() and cur.isupper()
        acronym_end = prev.isupper() and cur.isupper() and nxt.islower()
        if lower_upper or acronym_end:
            words.append(run[start:i])
            start = i
    words.append(run[start:])
    return words


def fold_plural(word: str) -> str:
    """A light English plural folding: umbrellas->umbrella, boxes->box, berries->berry."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclasses.dataclass(frozen=True)
class MappingOptions:
    """Refinements of the paper's rule; the defaults are the paper's rule itself."""

    min_token_length: int = 1
    fold_plurals: bool = False
    ignore_words: frozenset[str] = frozenset()
    phrase_mode: bool = False

    @classmethod
    def create(cls, min_token_length: int = 1, fold_plurals: bool = False,
               ignore: Sequence[str] = (), extra_ignore_words: Iterable[str] = (),
               phrase_mode: bool = False) -> MappingOptions:
        """Options from named ignore lists (:data:`IGNORE_LISTS`) plus extra words."""
        words = set(w.lower() for w in extra_ignore_words)
        for name in ignore:
            words |= ignore_list(name)
        return cls(min_token_length, fold_plurals, frozenset(words), phrase_mode)


@dataclasses.dataclass(frozen=True)
class ClassMatch:
    """An ImageNet class an image was assigned to, and why."""

    index: int
    wnid: str
    name: str
    matched_words: tuple[str, ...]


class NameMapper:
    """Maps file names to ImageNet-1k classes by shared words (paper §4.1)."""

    def __init__(self, options: MappingOptions = MappingOptions(),
                 classes: Sequence[imagenet.ImageNetClass] | None = None):
        self.options = options
        self.classes = tuple(classes if classes is not None else imagenet.classes())
        # word -> class indices (word mode); word -> [(class, synonym words)] (phrase mode).
        self._word_index: dict[str, set[int]] = collections.defaultdict(set)
        self._phrases: dict[str, list[tuple[int, frozenset[str]]]] = collections.defaultdict(list)
        for c in self.classes:
            for synonym in c.names:
                words = frozenset(self.words(synonym, triggers_only=False))
                for w in words:
                    self._word_index[w].add(c.index)
                    self._phrases[w].append((c.index, words))
        self._by_index = {c.index: c for c in self.classes}

    def words(self, text: str, triggers_only: bool = True) -> list[str]:
        """Tokens of ``text`` that take part in matching, in order, deduplicated.

        Stop words never take part. With ``triggers_only``, neither do ignored
        words and words shorter than ``min_token_length``: those cannot put an
        image into a class (class names are read with ``triggers_only=False``,
        and in phrase mode such words may still complete a phrase: with
        colours ignored, ``red_fox`` is a red fox but ``red_car`` is no red wolf).
        """
        o = self.options
        out: list[str] = []
        for w in tokenize(text):
            if o.fold_plurals:
                w = fold_plural(w)
            if w in stop_words() or (triggers_only and (
                    len(w) < o.min_token_length or w in o.ignore_words)):
                continue
            if w not in out:
                out.append(w)
        return out

    def match(self, file_name: str) -> list[ClassMatch]:
        """The classes ``file_name`` is copied into, by ascending ImageNet index."""
        stem = strip_extension(file_name)
        words = self.words(stem)
        hits: dict[int, set[str]] = collections.defaultdict(set)
        if self.options.phrase_mode:
            all_words = self.words(stem, triggers_only=False)
            present = set(all_words)
            for w in words:
                for index, phrase in self._phrases.get(w, ()):
                    if phrase <= present:
                        hits[index] |= phrase
        else:
            for w in words:
                for index in self._word_index.get(w, ()):
                    hits[index].add(w)
        out = []
        for index in sorted(hits):
            c = self._by_index[index]
            ordered = tuple(w for w in (all_words if self.options.phrase_mode else words)
                            if w in hits[index])
            out.append(ClassMatch(index, c.wnid, c.name, ordered))
        return out

    def class_indices(self, file_name: str) -> set[int]:
        """Just the class indices of :meth:`match`."""
        return {m.index for m in self.match(file_name)}


@dataclasses.dataclass
class MappingSummary:
    """What a mapping run did: the numbers the paper reports for its noisy set."""

    images_seen: int = 0
    images_mapped: int = 0
    assignments: int = 0
    images_per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    # word -> number of (image, class) assignments it caused, and the classes it hit.
    word_assignments: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    word_classes: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(set))

    def add(self, matches: Sequence[ClassMatch]) -> None:
        self.images_seen += 1
        if matches:
            self.images_mapped += 1
        for m in matches:
            self.assignments += 1
            self.images_per_class[m.index] += 1
            for w in m.matched_words:
                self.word_assignments[w] += 1
                self.word_classes[w].add(m.index)

    def classes_with_at_least(self, n: int) -> int:
        return sum(1 for v in self.images_per_class.values() if v >= n)

    def format(self, classes: Sequence[imagenet.ImageNetClass] | None = None,
               top: int = 15) -> str:
        """A human-readable report, with the words that flood classes."""
        table = {c.index: c for c in (classes or imagenet.classes())}
        pct = 100.0 * self.images_mapped / max(self.images_seen, 1)
        lines = [
            f"images seen:      {self.images_seen}",
            f"images mapped:    {self.images_mapped} ({pct:.1f}%)",
            f"assignments:      {self.assignments} (an image is copied into every matched class)",
            f"classes >=1 / >=10 / >=50 images: {self.classes_with_at_least(1)} / "
            f"{self.classes_with_at_least(10)} / {self.classes_with_at_least(50)}",
            "",
            f"top {top} words by assignments (a word hitting many classes or images is noise):",
        ]
        for w, n in self.word_assignments.most_common(top):
            hit = sorted(self.word_classes[w])
            names = ", ".join(table[i].name for i in hit[:4]) + (" ..." if len(hit) > 4 else "")
            lines.append(f"  {w!r:16} {n:6d} assignments -> {len(hit):3d} classes: {names}")
        lines += ["", f"top {top} classes by images:"]
        for i, n in self.images_per_class.most_common(top):
            lines.append(f"  {n:6d}  {table[i].wnid} {table[i].name}")
        return "\n".join(lines)
