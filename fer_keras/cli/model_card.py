"""Model cards for ``models/``: generated from the files, never typed by hand.

Every figure comes from a model file's own metadata (written by the training
engine) and, for the ensemble, from a ``report.json`` written by
``test_ensemble_model.py``; so the card cannot drift from what is shipped.

    python -m fer_keras.cli.model_card --models-dir models --report reports/publictest/report.json

``--report`` may be given more than once (say, without and with ``--tta``):
each report becomes its own ensemble section, in the order given.

A file gets one figure per split and scoring: where a member's card (its
metadata) and an ensemble table (a report without TTA on the same split) would
print different accuracies or macro-F1 for it, one of them is stale and the
card is refused (:func:`check_one_figure_per_file`; exit 2) until the file's
metadata is rescored or the report regenerated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from fer_keras.errors import FerError
from fer_keras.io_utils import natural_key, write_text_atomic
from fer_keras.models.model_io import MODEL_SUFFIXES, read_metadata
from fer_keras.training import TrainConfig

ACCURACY = ".2%"
MACRO_F1 = ".3f"
"""How the card prints the two scores; figures are compared as printed."""

# Which script trains which architecture, and the defaults that script sets.
SCRIPTS = {
    "vgg16": ("train_vgg.py", {"model": "vgg16"}),
    "inception_v1": ("train_inception.py", {"model": "inception_v1"}),
    "vgg16_imagenet": ("train_vgg_transfer_learning.py",
                       {"model": "vgg16_imagenet", "weights": "imagenet", "lr": 1e-3, "epochs": 20,
                        "augment": "light", "warmup_steps": 0}),
}
NOT_FLAGS = {"model_options", "phases", "model", "models_dir", "run_dir"}


def training_command(meta):
    """The command line that reproduces a member, from its stored recipe."""
    recipe = dict(meta.get("recipe", {}))
    arch = meta.get("architecture", recipe.get("model", "?"))
    script, script_defaults = SCRIPTS.get(arch, ("train.py", {}))
    defaults = {**dataclasses.asdict(TrainConfig()), **script_defaults}
    parts = [f"python {script}"]
    if script == "train.py":
        parts.append(f"--model {arch}")
    for key, value in recipe.items():
        if key in NOT_FLAGS or key not in defaults or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        else:
            parts.append(f"{flag} {value}")
    for key, value in recipe.get("model_options", {}).items():
        parts.append(f"-o {key}={value}")
    return " ".join(parts)


def _budget_note(meta):
    """Say when the time budget, not ``--epochs``, decided how long a member trained.

    Then the epoch count depends on the machine's speed and load, so a rerun of
    the same command reproduces the schedule only on an equally fast, quiet
    machine; ``--epochs N`` gives the same length anywhere (the same cosine
    schedule too, unless the budget re-planned it mid-run)."""
    recipe = meta.get("recipe", {})
    run, planned = meta.get("epochs_run"), recipe.get("epochs")
    if not recipe.get("time_budget") or not isinstance(run, int) or not planned or run >= planned:
        return ""
    return f"; the {recipe['time_budget']:g}-min budget cut it from `--epochs {planned}`"


def _teacher_list(path, teacher):
    """The teacher's member files, marking those no longer beside the student.

    A member can be replaced after a student learnt from it; the card must not
    suggest the student copied the folder's current ensemble when it did not."""
    folder = Path(path).parent
    return ", ".join(name if (folder / name).exists() else f"{name} (since removed from {folder.name}/)"
                     for name in teacher.get("members", []))


def _start_stages(stage):
    """The ``init_from`` chain, nearest stage first."""
    while stage:
        yield stage
        stage = stage.get("init_from")


def _lineage(path, parent):
    """One line per stage a fine-tuned member started from, nearest first.

    A start file may not be in ``models/``: a member replaced since (git
    history keeps it; the sha256 says which version) or a stage kept in a run
    folder (transfer learning's phase 1)."""
    folder, stages = Path(path).parent, []
    for parent in _start_stages(parent):
        name = parent.get("file", "?")
        where = name if (folder / name).exists() else f"{parent.get('path', name)} (not in {folder.name}/ now)"
        val = parent.get("validation", {})
        stages.append(f"`{where}`, sha256 `{parent.get('sha256', '?')[:12]}…`: "
                      + (f"`{training_command(parent)}`, " if parent.get("recipe") else "")
                      + f"{parent.get('epochs_run', '?')} epochs, {parent.get('train_seconds', 0) / 60:.0f} min, "
                      + f"{val.get('split', 'validation')} {val.get('accuracy', float('nan')):.2%}")
    return "; then ".join(reversed(stages)) + "; then the recipe above"


def _wall_time(meta):
    """This run's minutes, and with ``--init`` the total over every stage."""
    own = meta.get("train_seconds", 0)
    text = f"{own / 60:.0f} min, {meta.get('precision_trained', '?')}"
    total = own + sum(stage.get("train_seconds", 0) for stage in _start_stages(meta.get("init_from")))
    return text + (f" ({total / 60:.0f} min with the stages it started from)" if total != own else "")


def member_card(path, meta):
    val = meta.get("validation", {})
    lines = [f"### `{Path(path).name}` — {meta.get('architecture', 'unknown architecture')}", ""]
    rows = [
        ("options", ", ".join(f"{k}={v}" for k, v in meta.get("options", {}).items()) or "defaults"),
        ("parameters", f"{meta.get('parameters', 0):,}"),
        ("classes", ", ".join(meta.get("class_names", []))),
        ("input", "48x48x1 grey, raw 0..255 (resizing/scaling inside the model)"),
        ("recipe", f"`{training_command(meta)}`" if meta.get("recipe") else "not recorded"),
        ("epochs", f"{meta.get('epochs_run', '?')} (best: {meta.get('best_epoch', '?')})"
         + (f", snapshot at epoch {meta['snapshot_epoch']}" if "snapshot_epoch" in meta else "")
         + _budget_note(meta)),
        ("wall time", _wall_time(meta)),
        ("machine", meta.get("machine", "?")),
        (f"{val.get('split', 'validation')} accuracy", format(val.get("accuracy", float("nan")), ACCURACY)),
        (f"{val.get('split', 'validation')} macro-F1", format(val.get("macro_f1", float("nan")), MACRO_F1)),
        ("dataset sha256", f"`{meta.get('dataset', {}).get('sha256', '?')[:16]}…`"),
        ("toolkit", meta.get("toolkit_version", "?")),
    ]
    if "teacher" in meta:  # right after the recipe row
        recipe = meta.get("recipe", {})
        after_recipe = [k for k, _ in rows].index("recipe") + 1
        rows.insert(after_recipe, ("distilled from", f"{_teacher_list(path, meta['teacher'])} (mean softmax, "
                                   f"flip TTA; alpha {recipe.get('distill_alpha', '?')}, "
                                   f"T {recipe.get('distill_temperature', '?')})"))
    if "init_from" in meta:
        after_recipe = [k for k, _ in rows].index("recipe") + 1
        rows.insert(after_recipe, ("started from", _lineage(path, meta["init_from"])))
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    return "\n".join(lines)


def _with_ci(scores, key, fmt):
    """``65.34% [63.81, 66.87]``: the figure and its bootstrap interval, when the report has one."""
    value = format(scores[key], fmt)
    low_high = scores.get("ci95", {}).get(key)
    if not low_high:
        return value
    scale, digits = (100, 2) if fmt.endswith("%") else (1, 3)
    return f"{value} [{low_high[0] * scale:.{digits}f}, {low_high[1] * scale:.{digits}f}]"


def ensemble_section(report):
    e = report["ensemble"]
    mode = report.get("tta_mode") or ("flip" if report.get("tta") else "none")
    tta = "" if mode == "none" else f" with {'ten-crop' if mode == 'tencrop' else mode} TTA"
    lines = [
        f"## The ensemble{tta}",
        "",
        f"Members combined by {report.get('method', 'mean')} of softmax{tta}, on **{report['usage']}** "
        f"({report['n_samples']} faces), from `{report.get('csv', '?')}`:",
        "",
        "| member | accuracy [95% CI] | macro-F1 [95% CI] | weighted-F1 | vs ensemble (McNemar) |",
        "|---|---|---|---|---|",
    ]
    for m in report["members"]:
        if m.get("skipped"):
            lines.append(f"| {Path(m['file']).name} | skipped: {m['skipped']} | | | |")
        else:
            test = m.get("mcnemar_vs_ensemble")
            versus = f"p = {test['p_value']:.3g} ({test['b']} vs {test['c']} faces)" if test else "-"
            lines.append(f"| {Path(m['file']).name} | {_with_ci(m, 'accuracy', ACCURACY)} | "
                         f"{_with_ci(m, 'macro_f1', MACRO_F1)} | {m['weighted_f1']:.3f} | {versus} |")
    lines.append(f"| **ensemble** | **{_with_ci(e, 'accuracy', ACCURACY)}** | **{_with_ci(e, 'macro_f1', MACRO_F1)}** | "
                 f"**{e['weighted_f1']:.3f}** | |")
    if "bootstrap" in report:
        lines += ["", f"Intervals: {report['bootstrap']['resamples']} seeded bootstrap resamples of the faces. "
                  "McNemar: exact test of the member against the ensemble; the counts are the faces only the "
                  "member gets right vs only the ensemble gets right."]
    lines += ["", "Per-class F1 of the ensemble: "
              + ", ".join(f"{k} {v['f1']:.2f}" for k, v in e["per_class"].items()), ""]
    lines += _overlap_lines(report)
    return "\n".join(lines)


def _overlap_lines(report):
    """The faces of the scored split that are also in the training split, and the score without them."""
    overlap = report.get("overlap")
    if not overlap or not overlap["faces"] or not overlap["rest"]:
        return []
    seen, rest, e = overlap["faces"], overlap["rest"], overlap["ensemble"]
    rest_scores = {"accuracy": e["accuracy_rest"], "macro_f1": e["macro_f1_rest"],
                   "ci95": e.get("ci95_rest", {})}
    return [f"{seen} of the {seen + rest} {report['usage']} faces ({seen / (seen + rest):.1%}) are also, pixel "
            f"for pixel, in {overlap['reference']}; the ensemble gets {e['accuracy_seen']:.1%} of them right. "
            f"On the other {rest}: **{_with_ci(rest_scores, 'accuracy', ACCURACY)}**, macro-F1 "
            f"{_with_ci(rest_scores, 'macro_f1', MACRO_F1)}.", ""]


def calibration_section(models_dir):
    """Lines saying how the default ensemble's probabilities are calibrated (none without a
    ``temperatures.json``): the file, where it was fitted and what it changed."""
    path = Path(models_dir) / "temperatures.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    fitted = doc.get("fitted_on", {})
    temps = ", ".join(f"{name} {t:.3f}" for name, t in doc.get("temperatures", {}).items())
    lines = ["## Calibration", "",
             f"`{path.name}` is applied by default (the tester, `predict.py`, `serve.py`, `export.py` and "
             "`Ensemble.from_dir`; `--weights uniform` turns it off): one temperature per member, fitted on "
             f"**{fitted.get('usage', '?')}** ({fitted.get('n_samples', '?')} faces, "
             f"TTA {fitted.get('tta', 'none')}), then one shared factor "
             f"({doc.get('shared_scale', 1.0):.3f}) that calibrates their average. Temperatures: {temps}. "
             "One member run alone gets the temperature fitted for it alone: its own divided by the "
             "shared factor." + _alone_sentence(doc), ""]
    if "ece" in doc:
        ece = doc["ece"]
        lines += [f"Ensemble ECE on {fitted.get('usage', '?')}: {ece['before']:.3f} before, {ece['after']:.3f} "
                  f"after (fitted and judged on the same faces); fitted on one half and judged on the other: "
                  f"{ece['held_out_before']:.3f} → {ece['held_out_after']:.3f}.", ""]
    return lines


def _alone_sentence(doc):
    """The sentence naming the temperatures fitted alone for the distilled files the ensemble
    sets aside (the webcam runs one alone); empty without any."""
    alone = doc.get("alone") or {}
    if not alone:
        return ""
    return (" Distilled files the ensemble sets aside (the webcam runs one alone), fitted alone on the same "
            "faces: " + ", ".join(f"{name} {t:.3f}" for name, t in alone.items()) + ".")


def _same_scoring(meta, report):
    """Whether a report's member row scores what the member's metadata does: same split and
    dataset and class count, no TTA (flipped faces are another prediction)."""
    val, data = meta.get("validation", {}), meta.get("dataset", {})
    same_data = "dataset" not in report or "name" not in data or data["name"] == report["dataset"]
    same_classes = ("classes" not in report or "num_classes" not in meta
                    or len(report["classes"]) == meta["num_classes"])
    return not report.get("tta") and val.get("split") == report.get("usage") and same_data and same_classes


def check_one_figure_per_file(metas, reports):
    """Raise :class:`FerError` when a file's card and an ensemble table would print different scores.

    ``metas``: ``{file name: metadata}``. The card's figure was measured when
    the file was written, the table's when the report was made; with the same
    split and scoring they must agree as printed. When they do not, one is
    stale (metadata measured on the mixed-precision model before the float32
    file was scored, a report on a file replaced since), and printing both
    leaves the reader to guess which to believe.
    """
    clashes = []
    for report in reports:
        for row in report.get("members", []):
            meta = metas.get(Path(row["file"]).name)
            if row.get("skipped") or meta is None or not _same_scoring(meta, report):
                continue
            val = meta["validation"]
            own = (format(val["accuracy"], ACCURACY), format(val["macro_f1"], MACRO_F1))
            table = (format(row["accuracy"], ACCURACY), format(row["macro_f1"], MACRO_F1))
            if own != table:
                clashes.append(f"{Path(row['file']).name}: {val['split']} {own[0]}, macro-F1 {own[1]} in its "
                               f"metadata but {table[0]}, {table[1]} in the ensemble report")
    if clashes:
        raise FerError("two figures for one file (" + "; ".join(clashes) + "); rescore the file's metadata "
                       "(model_io.write_metadata) or regenerate the report")


def render(models_dir, reports=()):
    """The Markdown of ``models/README.md``; raises :class:`FerError` where figures disagree."""
    files = sorted((p for p in Path(models_dir).iterdir() if p.suffix in MODEL_SUFFIXES and not p.name.startswith(".")),
                   key=natural_key)
    metas = {path.name: read_metadata(path) for path in files}
    check_one_figure_per_file(metas, reports)
    out = ["# Shipped models", "",
           "Generated by `python -m fer_keras.cli.model_card` from each file's metadata"
           + (" and the ensemble report" + ("s" if len(reports) > 1 else "") if reports else "")
           + "; do not edit by hand.", "",
           "Every file takes raw 48x48x1 grey faces (0..255) and returns float32 softmax over "
           "angry, disgust, fear, happy, sad, surprise, neutral. Trained on FER2013 `Training`; "
           "the best epoch was chosen on `PublicTest`, and the members were kept or removed by what "
           "they add to the ensemble's PublicTest score, so PublicTest figures are optimistic by both "
           "selections; the withheld `PrivateTest` is the final judge.", ""]
    out += calibration_section(models_dir)
    out += [ensemble_section(report) for report in reports]
    out += ["## Members", ""]
    for path in files:
        out.append(member_card(path, metas[path.name]))
    if not files:
        out.append("No model files yet.")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--report", action="append", default=[],
                        help="report.json from test_ensemble_model.py (optional; repeat for several)")
    parser.add_argument("--out", help="default: <models-dir>/README.md")
    args = parser.parse_args(argv)
    reports = [json.loads(Path(path).read_text()) for path in args.report]
    out = Path(args.out or Path(args.models_dir) / "README.md")
    try:
        text = render(args.models_dir, reports)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text_atomic(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
