"""Plain-text and Markdown tables, formatted one way for every report.

The ensemble report, the export checks and the command lines print tables
through these functions, so a float always reads with 4 decimals and a
missing value as '-', wherever it is shown (``report.html`` reuses
:func:`format_cell`).
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.metrics import MACRO_AVERAGE


def format_cell(value):
    """How a table shows a value: floats with 4 decimals, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    return str(value)


def format_table(headers, rows, *, markdown=False, align=None):
    """Plain-text (or Markdown) table. Floats are shown with 4 decimals, None as '-'.

    ``align``: one of ``"<"``/``">"`` per column (default: first column left,
    the others right).
    """
    text_rows = [[format_cell(v) for v in row] for row in rows]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    if markdown:
        rule = ["---" if a == "<" else "---:" for a in align]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in text_rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[i]) for r in text_rows)) if text_rows else len(str(h))
              for i, h in enumerate(headers)]
    def line(values):
        return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(values, align, widths)).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in text_rows])


def confusion_rows(matrix, class_names=CLASS_NAMES):
    """``(headers, rows)`` of :func:`confusion_table`."""
    matrix = np.asarray(matrix)
    headers = ["true \\ predicted", *class_names]
    rows = [[name, *(int(v) for v in matrix[i])] for i, name in enumerate(class_names)]
    return headers, rows


def confusion_table(matrix, class_names=CLASS_NAMES, *, markdown=False):
    """A confusion matrix as a table: rows true class, columns predicted."""
    headers, rows = confusion_rows(matrix, class_names)
    return format_table(headers, rows, markdown=markdown)


def per_class_rows(metrics, class_names=CLASS_NAMES):
    """``(headers, rows)`` of :func:`per_class_table`."""
    rows = []
    for name in class_names:
        c = metrics["per_class"][name]
        rows.append([name, c["precision"], c["recall"], c["f1"], c["support"]])
    rows.append(["macro avg", metrics["precision_macro"], metrics["recall_macro"], metrics["macro_f1"],
                 sum(metrics["per_class"][n]["support"] for n in class_names)])
    return ["class", "precision", "recall", "f1", "support"], rows


def per_class_table(metrics, class_names=CLASS_NAMES, *, markdown=False):
    """Precision, recall, F1 and support per class from ``classification_metrics`` output,
    then how the macro averages were taken (:data:`fer_keras.metrics.MACRO_AVERAGE`)."""
    headers, rows = per_class_rows(metrics, class_names)
    return format_table(headers, rows, markdown=markdown) + ("\n\n" if markdown else "\n") + MACRO_AVERAGE
