"""Collect ensemble reports into one table and one bar chart.

Each ``report.json`` (written by ``test_ensemble_model.py --out DIR``) scores
the members and their ensemble on one dataset split. This script puts them
side by side: one row per model (the ensemble last), one column per
dataset/split, written as ``results.md`` (Markdown table, best value per
column in bold, then where each column came from) and ``results.png``
(grouped bars: models x datasets).

  python results/compare.py reports/*/report.json --out results/
  python results/compare.py reports/fer/report.json=FER2013 reports/raf/report.json=RAF-DB --metric macro_f1

A column is named after the report's CSV or image folder (``fer2013.csv.gz``
→ ``fer2013``) and its Usage (``fer2013 PrivateTest``), unless a name is given
as ``PATH=NAME`` (as an argument or with ``--name PATH=NAME``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without installing fer_keras
    sys.path.insert(0, str(HERE.parent))

from fer_keras.errors import FerError  # noqa: E402
from fer_keras.io_utils import prepare_output_dir, write_text_atomic  # noqa: E402

METRICS = ("accuracy", "macro_f1", "weighted_f1")
"""Figures every report gives for the ensemble and for each member."""

ARCHIVE_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")


@dataclasses.dataclass
class Results:
    """``values[(model, dataset)]``: the metric, or None where the member was skipped."""

    metric: str
    models: list
    datasets: list
    values: dict
    sources: list
    """One dict per dataset column: report path, faces, method, TTA, skipped members."""

    def value(self, model, dataset):
        return self.values.get((model, dataset))

    def has(self, model, dataset):
        return (model, dataset) in self.values


# === Reading ===


def read_report(path):
    """The report.json document; FerError when it is missing or not a report."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FerError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FerError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FerError(f"{path}: not a report.json (expected an object)")
    missing = [k for k in ("ensemble", "members") if k not in doc]
    if missing:
        raise FerError(f"{path}: not an ensemble report.json (no {', '.join(missing)}; "
                       "write one with test_ensemble_model.py --out DIR)")
    return doc


def dataset_name(doc, path):
    """``<csv or image-folder stem> <usage>``, e.g. ``fer2013 PrivateTest``."""
    source = doc.get("csv") or doc.get("images")
    if source:
        name = Path(str(source).rstrip("/\\")).name
        for suffix in ARCHIVE_SUFFIXES:
            name = name.removesuffix(suffix)
        name = name.removesuffix(".csv")
    else:
        name = Path(path).parent.name or "report"
    usage = doc.get("usage")
    return f"{name} {usage}" if usage else name


def split_name_arg(text):
    """``PATH=NAME`` → ``(PATH, NAME)``; a plain path (even one holding '=') → ``(PATH, None)``."""
    if Path(text).exists() or "=" not in text:
        return text, None
    path, name = text.rsplit("=", 1)
    return path, name.strip() or None


def collect(paths, *, names=None, metric="accuracy"):
    """Read the reports and arrange ``metric`` as models x datasets.

    ``names`` maps a report path (as given) to its column name. Members are
    identified by their file path; the row label is the shortest tail of the
    path that tells them apart (usually the file name).
    """
    if metric not in METRICS:
        raise FerError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if not paths:
        raise FerError("no report.json files given")
    names = {os.path.normpath(k): v for k, v in (names or {}).items()}
    columns, cells, sources = [], {}, []
    member_keys, ensemble_keys = [], []
    for path in paths:
        doc = read_report(path)
        column = names.get(os.path.normpath(path)) or dataset_name(doc, path)
        base, n = column, 2
        while column in columns:  # the same dataset twice: keep both, numbered
            column, n = f"{base} #{n}", n + 1
        columns.append(column)
        skipped = []
        for i, member in enumerate(doc["members"]):
            if not isinstance(member, dict) or "file" not in member:
                raise FerError(f"{path}: members[{i}] has no 'file'")
            key = str(member["file"])
            if key not in member_keys:
                member_keys.append(key)
            if member.get("skipped"):
                skipped.append(f"{Path(key).name}: {member['skipped']}")
                cells[(key, column)] = None
            else:
                cells[(key, column)] = _number(member.get(metric), path, f"members[{i}].{metric}")
        ensemble = f"ensemble ({doc.get('method', '?')}{', TTA' if doc.get('tta') else ''})"
        if ensemble not in ensemble_keys:
            ensemble_keys.append(ensemble)
        cells[(ensemble, column)] = _number((doc["ensemble"] or {}).get(metric), path, f"ensemble.{metric}")
        sources.append({"dataset": column, "report": str(path), "faces": doc.get("n_samples"),
                        "method": doc.get("method"), "tta": bool(doc.get("tta")), "skipped": skipped})
    labels = _short_labels(member_keys)
    values = {(labels.get(k, k), c): v for (k, c), v in cells.items()}
    models = [labels[k] for k in member_keys] + ensemble_keys
    return Results(metric=metric, models=models, datasets=columns, values=values, sources=sources)


def _number(value, path, what):
    if value is None:
        raise FerError(f"{path}: {what} is missing")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FerError(f"{path}: {what} is {value!r}, not a number") from None


def _short_labels(keys):
    """The shortest path tail (file name, then parent/file name ...) unique among ``keys``."""
    parts = {k: Path(k).parts or (k,) for k in keys}
    depth = {k: 1 for k in keys}
    while True:
        labels = {k: "/".join(parts[k][-depth[k]:]) for k in keys}
        clash = [k for k in keys if list(labels.values()).count(labels[k]) > 1 and depth[k] < len(parts[k])]
        if not clash:
            return labels
        for k in clash:
            depth[k] += 1


# === Writing ===


def markdown_table(results):
    """The models x datasets table, best value per column in bold."""
    from fer_keras.tables import format_table

    best = {}
    for d in results.datasets:
        scores = [results.value(m, d) for m in results.models if results.value(m, d) is not None]
        best[d] = max(scores) if scores else None
    rows = []
    for model in results.models:
        row = [model]
        for d in results.datasets:
            if not results.has(model, d):
                row.append("")
            elif results.value(model, d) is None:
                row.append("skipped")
            else:
                text = f"{results.value(model, d):.4f}"
                row.append(f"**{text}**" if results.value(model, d) == best[d] else text)
        rows.append(row)
    return format_table(["model", *results.datasets], rows, markdown=True)


def to_markdown(results):
    """``results.md``: the table, the chart, then where each column came from."""
    from fer_keras.tables import format_table

    metric = results.metric.replace("_", "-")
    lines = [f"# Results: {metric}", "",
             f"{metric} of each model (rows) on each dataset split (columns); best per column in bold, "
             "blank: not evaluated there, skipped: the file could not be used.", "",
             markdown_table(results), "",
             f"![{metric} per model and dataset](results.png)", "", "## Sources", "",
             format_table(["column", "report", "faces", "method", "TTA"],
                          [[s["dataset"], s["report"], s["faces"], s["method"], "yes" if s["tta"] else "no"]
                           for s in results.sources], markdown=True, align=["<", "<", ">", "<", "<"]), ""]
    skipped = [(s["dataset"], reason) for s in results.sources for reason in s["skipped"]]
    if skipped:
        lines += ["## Skipped members", ""] + [f"- {d}: {reason}" for d, reason in skipped] + [""]
    return "\n".join(lines)


def plot(results, *, ax=None, title=None):
    """Grouped bars: one group per dataset, one bar per model (ensembles outlined). Returns the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n_models, n_data = len(results.models), len(results.datasets)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 1.0 + n_data * (0.5 + 0.25 * n_models)), 4.5))
    ticks = np.arange(n_data)
    width = 0.8 / max(n_models, 1)
    for i, model in enumerate(results.models):
        heights = [np.nan if results.value(model, d) is None else results.value(model, d)
                   for d in results.datasets]
        is_ensemble = model.startswith("ensemble")
        ax.bar(ticks - 0.4 + width * (i + 0.5), heights, width, label=model,
               edgecolor="black" if is_ensemble else None, linewidth=1.0 if is_ensemble else 0,
               hatch="//" if is_ensemble else None)
    ax.set_xticks(ticks, results.datasets, rotation=15 if n_data > 3 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel(results.metric.replace("_", "-"))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(n_models, 4), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title(title or f"{results.metric.replace('_', '-')} per model and dataset")
    return ax


OUTPUT_FILES = ("results.md", "results.png")


def write(results, out_dir, *, overwrite=False):
    """Write ``results.md`` and ``results.png`` into ``out_dir`` (atomically); returns both paths.

    Existing ones are replaced only with ``overwrite``: the default folder is
    the repository's own ``results/``, which may hold tables worth keeping.
    """
    from fer_keras.plots import save_figure

    reports = [source["report"] for source in results.sources]
    out = prepare_output_dir(out_dir, overwrite=overwrite, names=OUTPUT_FILES, inputs=reports)
    ax = plot(results)
    ax.figure.tight_layout()
    png = save_figure(ax.figure, out / "results.png")
    md = out / "results.md"
    write_text_atomic(md, to_markdown(results))
    return md, png


# === Command line ===


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    p.add_argument("reports", nargs="+", metavar="REPORT[=NAME]", help="report.json files (optionally =column name)")
    p.add_argument("--name", action="append", default=[], metavar="PATH=NAME",
                   help="column name for one report (repeatable)")
    p.add_argument("--metric", choices=METRICS, default="accuracy", help="figure to compare (default: accuracy)")
    p.add_argument("--out", default=str(HERE), help="folder for results.md and results.png (default: results/)")
    p.add_argument("--overwrite", action="store_true", help="replace results.md and results.png already in --out")
    return p


def main(argv=None):
    from fer_keras.cli.common import run_cli

    parser = build_parser()
    args = parser.parse_args(argv)

    def job():
        paths, names = [], {}
        for text in args.reports:
            path, name = split_name_arg(text)
            paths.append(path)
            if name:
                names[path] = name
        for text in args.name:
            if "=" not in text:
                raise FerError(f"--name {text!r}: expected PATH=NAME")
            path, name = text.rsplit("=", 1)
            names[path] = name.strip()
        results = collect(paths, names=names, metric=args.metric)
        md, png = write(results, args.out, overwrite=args.overwrite)
        print(markdown_table(results))
        print(f"\nwrote {md} and {png}")

    return run_cli(job, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
