"""Drawing predictions onto pictures: a box per face, the top emotion with its
confidence, and a small bar per class.

Everything scales with the picture; pictures under ``MIN_SIDE`` pixels (a
48x48 face) are enlarged first so the text stays legible.
"""

from __future__ import annotations

import textwrap

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.inference.faces import to_bgr

MIN_SIDE = 480
"""Annotated pictures are enlarged until their longer side is at least this."""

CLASS_COLOURS_RGB = ("#d62728", "#2ca02c", "#9467bd", "#ffbf00", "#1f77b4", "#ff7f0e", "#8c8c8c")
"""One colour per FER2013 class (angry red, disgust green, fear purple, happy
amber, sad blue, surprise orange, neutral grey); the timeline plot uses them too."""


def _bgr(hex_colour):
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i:i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


CLASS_COLOURS_BGR = tuple(_bgr(c) for c in CLASS_COLOURS_RGB)


def _ink_for(bgr):
    """Black or white text, whichever reads better on ``bgr``."""
    b, g, r = bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def upscale_for_drawing(image):
    """``(image, factor)``: an integer enlargement of a small picture (factor 1 = unchanged)."""
    import cv2

    side = max(image.shape[:2])
    factor = max(1, int(np.ceil(MIN_SIDE / side))) if side < MIN_SIDE else 1
    if factor == 1:
        return image, 1
    resized = cv2.resize(image, (image.shape[1] * factor, image.shape[0] * factor), interpolation=cv2.INTER_CUBIC)
    return resized, factor


def draw_faces(image, faces, class_names=CLASS_NAMES, *, caption=None, extend=True):
    """An annotated BGR copy of ``image`` (grey, BGR or BGRA).

    ``faces``: objects with ``box`` (x, y, w, h), ``probs`` (7,), ``label`` and
    ``confidence`` (:class:`fer_keras.inference.results.FaceResult`). ``caption``: a line
    of text at the top left (e.g. "no face found"). The probability panel goes
    beside, below or above each box; where there is no room, ``extend`` widens
    the picture with a dark strip for it, else (video frames, whose size must
    not change) the panel covers part of the picture.
    """
    canvas, factor = upscale_for_drawing(to_bgr(image))
    height, width = canvas.shape[:2]
    scale = max(0.45, min(1.2, min(height, width) / 800))  # font scale
    thick = max(1, int(round(scale * 2)))
    bar_scale, bar_thick = scale * 0.75, max(1, thick - 1)
    panel_w, panel_h = _panel_size(class_names, bar_scale, bar_thick)[:2]
    gap = max(4, int(6 * scale))
    boxes = [face.box.scaled(factor) if factor != 1 else face.box for face in faces]
    label_h = _label_height(scale, thick)  # each box's label sits above it: keep panels off it too
    labelled = [(b.x, b.y - label_h, b.w, b.h + label_h) for b in boxes]
    origins = panel_origins(labelled, panel_w, panel_h, width, height, gap)
    if not extend:
        origins = [o if o is not None else (min(max(b.x, 0), max(width - panel_w, 0)),
                                             min(max(b.y, 0), max(height - panel_h, 0)))
                   for o, b in zip(origins, boxes)]
    elif any(o is None for o in origins):
        # No room around some face (a face filling the picture): widen the picture with a dark strip.
        strip = np.full((height, panel_w + 2 * gap, 3), 32, np.uint8)
        canvas = np.concatenate([canvas, strip], axis=1)
        if panel_h > height:
            canvas = np.concatenate([canvas, np.full((panel_h - height + gap, canvas.shape[1], 3), 32, np.uint8)])
        origins = [o if o is not None else (width + gap, min(max(b.y, 0), max(canvas.shape[0] - panel_h, 0)))
                   for o, b in zip(origins, boxes)]
    for face, box, origin in zip(faces, boxes, origins):
        _draw_face(canvas, box, face, class_names, scale, thick)
        index = class_names.index(face.label) if face.label in class_names else int(np.argmax(face.probs))
        _draw_bars(canvas, origin, face.probs, class_names, bar_scale, bar_thick, index)
    if caption:
        _text_block(canvas, caption, (int(8 * scale), int(8 * scale)), scale, thick, (40, 40, 40))
    return canvas


def _draw_face(canvas, box, face, class_names, scale, thick):
    import cv2

    index = class_names.index(face.label) if face.label in class_names else int(np.argmax(face.probs))
    colour = CLASS_COLOURS_BGR[index % len(CLASS_COLOURS_BGR)]
    x, y, w, h = box.as_tuple()
    cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), colour, max(2, thick + 1))
    # Label above the box (inside it when the box touches the top edge).
    label = f"{face.label} {face.confidence:.0%}"
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, int(4 * scale))
    top = y - _label_height(scale, thick)
    if top < 0:
        top = y
    x0 = min(max(x, 0), max(canvas.shape[1] - tw - 2 * pad, 0))
    cv2.rectangle(canvas, (x0, top), (x0 + tw + 2 * pad, top + th + base + 2 * pad), colour, -1)
    cv2.putText(canvas, label, (x0 + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, _ink_for(colour),
                thick, cv2.LINE_AA)


def _label_height(scale, thick):
    """Height of the label drawn above a box (its text, descent and padding)."""
    import cv2

    (_, th), base = cv2.getTextSize("Hg 100%", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return th + base + 2 * max(2, int(4 * scale))


def _panel_size(class_names, scale, thick):
    """Geometry of the probability panel: (width, height, name width, bar width, row, pad, text height)."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    name_w = max(cv2.getTextSize(str(n), font, scale, thick)[0][0] for n in class_names)
    (_, text_h), base = cv2.getTextSize("Hg", font, scale, thick)
    row = text_h + base + max(2, int(3 * scale))
    pad = max(3, int(6 * scale))
    bar_w = int(name_w * 1.4)
    pct_w = cv2.getTextSize("100%", font, scale, thick)[0][0]
    return pad * 4 + name_w + bar_w + pct_w, pad * 2 + row * len(class_names), name_w, bar_w, row, pad, text_h


def panel_origins(boxes, panel_w, panel_h, width, height, gap):
    """Top-left corners for each face's probability panel (None where none fits in the picture).

    Each panel goes right of its box, else left, below or above: the first
    of these that covers no face and no panel placed before it, else the one
    that covers least (in a group photo the first free side is often on a
    neighbour). ``boxes``: ``(x, y, w, h)`` tuples, each face's box with
    its label.
    """
    taken = [tuple(box) for box in boxes]
    origins = []
    for box in boxes:
        sides = _panel_sides(box, panel_w, panel_h, width, height, gap)
        if not sides:
            origins.append(None)
            continue
        best = min(sides, key=lambda corner: sum(_overlap((*corner, panel_w, panel_h), other) for other in taken))
        taken.append((*best, panel_w, panel_h))
        origins.append(best)
    return origins


def _panel_sides(box, panel_w, panel_h, width, height, gap):
    """The corners inside the picture right of, left of, below and above ``box``, in that order."""
    x, y, w, h = box
    clip_y = min(max(y, 0), max(height - panel_h, 0))
    clip_x = min(max(x, 0), max(width - panel_w, 0))
    sides = []
    if panel_h <= height and x + w + gap + panel_w <= width:
        sides.append((x + w + gap, clip_y))
    if panel_h <= height and x - gap - panel_w >= 0:
        sides.append((x - gap - panel_w, clip_y))
    if panel_w <= width and y + h + gap + panel_h <= height:
        sides.append((clip_x, y + h + gap))
    if panel_w <= width and y - gap - panel_h >= 0:
        sides.append((clip_x, y - gap - panel_h))
    return sides


def _overlap(a, b):
    """The area two ``(x, y, w, h)`` rectangles share."""
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(dx, 0) * max(dy, 0)


def _draw_bars(canvas, origin, probs, class_names, scale, thick, top_index):
    """A small panel at ``origin``: one line per class, name and a bar as long as its probability."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    names = [str(n) for n in class_names]
    panel_w, panel_h, name_w, bar_w, row, pad, text_h = _panel_size(names, scale, thick)
    px, py = origin
    height, width = canvas.shape[:2]
    x1, y1 = min(px + panel_w, width), min(py + panel_h, height)
    region = canvas[py:y1, px:x1]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)  # darkened, still shows the picture
    for i, (name, p) in enumerate(zip(names, np.asarray(probs, dtype=float))):
        base_y = py + pad + row * i + text_h
        ink = (255, 255, 255) if i == top_index else (200, 200, 200)
        cv2.putText(canvas, name, (px + pad, base_y), font, scale, ink, thick, cv2.LINE_AA)
        bx = px + 2 * pad + name_w
        cv2.rectangle(canvas, (bx, base_y - text_h), (bx + bar_w, base_y), (90, 90, 90), 1)
        filled = int(round(bar_w * min(max(p, 0.0), 1.0)))
        if filled > 0:
            cv2.rectangle(canvas, (bx, base_y - text_h), (bx + filled, base_y),
                          CLASS_COLOURS_BGR[i % len(CLASS_COLOURS_BGR)], -1)
        cv2.putText(canvas, f"{p:.0%}", (bx + bar_w + pad, base_y), font, scale, ink, thick, cv2.LINE_AA)


def _text_block(canvas, text, origin, scale, thick, background):
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, int(4 * scale))
    x, y = origin
    cv2.rectangle(canvas, (x, y), (x + tw + 2 * pad, y + th + base + 2 * pad), background, -1)
    cv2.putText(canvas, text, (x + pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def explain_panel(crop_bgr, overlay_bgr, caption, *, height=240):
    """Side by side: the face as cropped and its Grad-CAM overlay, with a caption underneath."""
    import cv2

    def fit(img):
        factor = height / img.shape[0]
        return cv2.resize(img, (max(1, int(round(img.shape[1] * factor))), height), interpolation=cv2.INTER_CUBIC)

    left, right = fit(crop_bgr), fit(overlay_bgr)
    gap = np.full((height, 8, 3), 255, np.uint8)
    top = np.concatenate([left, gap, right], axis=1)
    scale = 0.5
    sample = "abcdefghijklmnopqrstuvwxyz 0123456789"
    (sample_w, th), base = cv2.getTextSize(sample, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    per_line = max(20, int((top.shape[1] - 12) / (sample_w / len(sample))))
    lines = textwrap.wrap(caption, per_line, break_on_hyphens=False) or [""]
    strip = np.full(((th + base + 6) * len(lines) + 6, top.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (6, 6 + th + i * (th + base + 6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([top, strip], axis=0)
