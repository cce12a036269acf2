"""What every reader returns: a :class:`FERDataset` of :class:`Split` s.

``splits`` is keyed by FER2013 Usage (``Training``, ``PublicTest``,
``PrivateTest``; only those present), each a :class:`Split` with ``x`` uint8
``(N, 48, 48, 1)`` and ``y`` int64 in FER2013 label order. The readers of other
datasets add what they left out and where each face came from
(:class:`DatasetInfo`), and FER+ vote distributions (:class:`SoftSplit`).
Splitting data that comes without a split, balancing classes and finding the
faces one split shares with another happen here once for every reader.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_keras.constants import CLASS_NAMES, USAGES
from fer_keras.errors import DataError


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: faces ``x`` (uint8, N x 48 x 48 x 1) and labels ``y`` (int64)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self):
        return len(self.y)

    def class_counts(self, num_classes=len(CLASS_NAMES)):
        """Number of faces per class, in FER2013 order."""
        return np.bincount(self.y, minlength=num_classes)


@dataclasses.dataclass
class FERDataset:
    """Splits keyed by Usage, plus where they came from."""

    splits: dict
    source: str
    checksum: str = ""
    class_names: tuple = CLASS_NAMES

    def __getitem__(self, usage):
        try:
            return self.splits[usage]
        except KeyError:
            raise DataError(
                f"{self.source}: no {usage!r} split (present: {', '.join(self.splits)})"
            ) from None

    def __contains__(self, usage):
        return usage in self.splits

    def summary(self):
        """One line per split: size and class counts."""
        lines = []
        for usage, split in self.splits.items():
            counts = " ".join(str(c) for c in split.class_counts(len(self.class_names)))
            lines.append(f"{usage:<12} {len(split):>6} faces  per class: {counts}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SoftSplit(Split):
    """A split with soft targets: ``soft`` float32 ``(N, num_classes)``, rows sum to 1.

    ``y`` is the hard label (the most probable class, lowest index on a tie),
    so code that reads only ``x`` and ``y`` keeps working.
    """

    soft: np.ndarray = None


@dataclasses.dataclass
class DatasetInfo(FERDataset):
    """A :class:`FERDataset` that also says what was left out and where faces came from."""

    dropped: dict = dataclasses.field(default_factory=dict)
    """``{reason: count}`` of rows or images left out on purpose."""
    files: dict = dataclasses.field(default_factory=dict)
    """Per Usage, the source of each face (same order as ``x``)."""

    def summary(self):
        lines = [super().summary()]
        if self.dropped:
            lines.append("dropped      " + ", ".join(f"{reason} {n}" for reason, n in self.dropped.items()))
        return "\n".join(lines)


def seen_in(faces, reference):
    """``(N,)`` bool: which of ``faces`` are, pixel for pixel, a face of ``reference``.

    Why: FER2013's PublicTest holds 280 faces (7.8%) that are also in
    Training, 267 of them with the same label. A model that memorised its
    training faces gets those right, so a split's figures without them say
    more about faces the models have never seen.
    """
    known = {face.tobytes() for face in np.ascontiguousarray(reference)}
    return np.fromiter((face.tobytes() in known for face in np.ascontiguousarray(faces)), bool, count=len(faces))


def soft_targets(split, num_classes=len(CLASS_NAMES)):
    """``split.soft`` for a :class:`SoftSplit`, else one-hot rows of ``split.y`` (float32)."""
    soft = getattr(split, "soft", None)
    if soft is not None:
        return soft
    return np.eye(num_classes, dtype=np.float32)[split.y]


SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Data with no split at all is split Training/PublicTest/PrivateTest like this, per class, seeded."""


def stratified_split(y, *, seed, fractions=SPLIT_FRACTIONS):
    """``{usage: sorted indices}`` for data that comes without a split: per class,
    seeded, ``fractions`` of Training, PublicTest and PrivateTest (a FER2013 CSV
    without ``Usage``, AffectNet or CK+ faces with no split folder)."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in USAGES}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(idx) * fractions[1]))
        n_test = int(round(len(idx) * fractions[2]))
        parts[USAGES[1]].append(idx[:n_val])
        parts[USAGES[2]].append(idx[n_val: n_val + n_test])
        parts[USAGES[0]].append(idx[n_val + n_test:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def balanced(split, *, mode="mean", seed=0, num_classes=len(CLASS_NAMES)):
    """A class-balanced copy of ``split`` (the balanced FER2013 variant).

    ``mode``: ``"undersample"`` cuts every class to the smallest class's size,
    ``"oversample"`` repeats faces (drawn with replacement) up to the largest,
    ``"mean"`` brings every class to the mean class size (undersampling large
    classes and oversampling small ones). Seeded; faces are shuffled.
    """
    counts = split.class_counts(num_classes)
    present = counts[counts > 0]
    target = {"undersample": present.min(), "oversample": present.max(),
              "mean": int(round(present.mean()))}.get(mode)
    if target is None:
        raise ValueError("mode must be 'undersample', 'oversample' or 'mean'")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.flatnonzero(counts):
        idx = np.flatnonzero(split.y == label)
        take = rng.permutation(idx)[:target]
        if len(take) < target:
            take = np.concatenate([take, rng.choice(idx, target - len(take), replace=True)])
        chosen.append(take)
    order = rng.permutation(np.concatenate(chosen))
    return Split(split.x[order], split.y[order])
