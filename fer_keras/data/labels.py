"""How the labels of FER+, RAF-DB (basic), AffectNet-7/8 and CK+ map onto FER2013's.

Label maps (module-level dicts below), onto FER2013 indices:

===================  =============  ==============  =================  ==========
FER2013 index        FER+ column    RAF-DB label    AffectNet index    CK+ folder
===================  =============  ==============  =================  ==========
0 angry              anger          6 Anger         6 Anger            anger
1 disgust            disgust        3 Disgust       5 Disgust          disgust
2 fear               fear           2 Fear          4 Fear             fear
3 happy              happiness      4 Happiness     1 Happy            happy
4 sad                sadness        5 Sadness       2 Sad              sadness
5 surprise           surprise       1 Surprise      3 Surprise         surprise
6 neutral            neutral        7 Neutral       0 Neutral          neutral
7 contempt (8 cl)    contempt       -               7 Contempt         contempt
dropped              unknown, NF    -               8, 9, 10           -
===================  =============  ==============  =================  ==========

Folder and CSV class *names* (AffectNet, CK+) also accept the spellings of
``CLASS_ALIASES`` (``angry``/``anger``, ``sad``/``sadness`` ...). A label that
is in no map is a :class:`~fer_keras.errors.DataError` naming the file, the
line and the label: nothing is ever remapped silently.
"""

from __future__ import annotations

from fer_keras.constants import CLASS_ALIASES, CLASS_NAMES_8

CONTEMPT = CLASS_NAMES_8.index("contempt")
"""Index of contempt in the 8-class order (7)."""

DROP = None
"""A label map value meaning "not an expression: leave the face out, count it"."""

FERPLUS_LABEL_MAP = {
    "neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0,
    "disgust": 1, "fear": 2, "contempt": CONTEMPT, "unknown": DROP, "nf": DROP,
}
"""fer2013new.csv vote column (lower case) → FER2013 index; ``None``: dropped when it wins."""

FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
"""The vote columns of fer2013new.csv, in the file's order."""

RAFDB_LABEL_MAP = {1: 5, 2: 2, 3: 1, 4: 3, 5: 4, 6: 0, 7: 6}
"""RAF-DB basic label (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
6 Anger, 7 Neutral) → FER2013 index."""

AFFECTNET_LABEL_MAP = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0, 7: CONTEMPT, 8: DROP, 9: DROP, 10: DROP}
"""AffectNet expression index (0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear,
5 Disgust, 6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face) → FER2013
index; 8..10 are dropped."""

AFFECTNET_DROPPED = {8: "none", 9: "uncertain", 10: "no_face"}
"""Names under which AffectNet's non-expression labels are counted in ``dropped``."""

NAME_LABEL_MAP = {**CLASS_ALIASES, "contempt": CONTEMPT, "contemptuous": CONTEMPT}
"""Class names (folder names, CSV label names) → FER2013 index; contempt → 7."""

AFFECTNET_DROPPED_NAMES = {"none": "none", "uncertain": "uncertain", "no-face": "no_face",
                           "no_face": "no_face", "noface": "no_face", "non-face": "no_face"}
"""AffectNet class names that mean "no expression label": dropped and counted."""

CKPLUS_LABEL_MAP = {"anger": 0, "disgust": 1, "fear": 2, "happy": 3, "sadness": 4, "surprise": 5,
                    "neutral": 6, "contempt": CONTEMPT}
"""CK+ class folder → FER2013 index (other spellings via ``NAME_LABEL_MAP``)."""


def label_map_table():
    """The label-map table of this module's docstring, rebuilt from the dicts."""
    rows = [("FER2013 index", "FER+ column", "RAF-DB label", "AffectNet index", "CK+ folder")]
    raf_names = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger", 7: "Neutral"}
    aff_names = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Anger",
                 7: "Contempt"}

    def find(mapping, index):
        return [k for k, v in mapping.items() if v == index]

    for index, name in enumerate(CLASS_NAMES_8):
        label = f"{index} {name}" + (" (8 cl)" if index == CONTEMPT else "")
        raf = " ".join(f"{k} {raf_names[k]}" for k in find(RAFDB_LABEL_MAP, index)) or "-"
        aff = " ".join(f"{k} {aff_names[k]}" for k in find(AFFECTNET_LABEL_MAP, index)) or "-"
        rows.append((label, ", ".join(find(FERPLUS_LABEL_MAP, index)), raf, aff,
                     ", ".join(find(CKPLUS_LABEL_MAP, index)) or "-"))
    dropped_ferplus = ", ".join(c for c in FERPLUS_COLUMNS if FERPLUS_LABEL_MAP[c.lower()] is DROP)
    rows.append(("dropped", dropped_ferplus, "-", ", ".join(str(k) for k in find(AFFECTNET_LABEL_MAP, DROP)), "-"))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    widths[-1] = max(len(r[-1]) for r in rows)
    rule = "  ".join("=" * w for w in widths)

    def line(row):
        return "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()

    return "\n".join([rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule])

