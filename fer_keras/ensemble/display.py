"""How an :class:`~fer_keras.ensemble.report.EnsembleReport` is shown: text, Markdown, HTML, figures.

scikit-learn keeps computing apart from displaying; so does this package:
:mod:`~fer_keras.ensemble.report` holds the figures (``report.json`` is its
``to_dict``), and the functions here render them. :func:`save` writes the
report folder: the figures, ``predictions.csv``, ``report.md``,
``report.html`` and, last, ``report.json``.
"""

from __future__ import annotations

import textwrap

from fer_keras import plots as figures
from fer_keras.ensemble.calibration import reliability_bins
from fer_keras.ensemble.html import write_html
from fer_keras.ensemble.selection import disagreement_matrix
from fer_keras.ensemble.tta import describe as tta_describe
from fer_keras.errors import FerError
from fer_keras.io_utils import prepare_output_dir, write_json_atomic, write_text_atomic
from fer_keras.metrics import MACRO_AVERAGE
from fer_keras.tables import confusion_rows, confusion_table, format_table, per_class_rows, per_class_table

REPORT_FILES = ("report.json", "report.md", "confusion_matrix.png", "per_class_f1.png", "predictions.csv",
                "reliability.png", "disagreement.png", "report.html")
"""Files every report folder holds (``worst.png`` too when asked for)."""


def report_files(*, worst=0):
    """The files :func:`save` writes: :data:`REPORT_FILES`, and ``worst.png`` when ``worst``."""
    return [*REPORT_FILES, *(["worst.png"] if worst else [])]


def _tta_suffix(report):
    """E.g. ``, flip TTA`` for titles and labels; empty without TTA."""
    return "" if report.tta == "none" else f", {report.tta} TTA"


def summary_rows(report):
    """``(headers, rows)`` of the members-and-ensemble table."""
    headers = ["model", "weight", "accuracy", "macro-F1", "weighted-F1", "precision", "recall"]
    rows = [[name, float(w), m["accuracy"], m["macro_f1"], m["weighted_f1"], m["precision_macro"],
             m["recall_macro"]]
            for name, w, m in zip(report.member_names, report.weights, report.member_metrics)]
    e = report.metrics
    label = f"ensemble ({report.method}{_tta_suffix(report)})"
    rows.append([label, None, e["accuracy"], e["macro_f1"], e["weighted_f1"], e["precision_macro"],
                 e["recall_macro"]])
    return headers, rows


def summary_table(report, *, markdown=False):
    """Members and ensemble: accuracy, macro/weighted F1, precision, recall."""
    headers, rows = summary_rows(report)
    return format_table(headers, rows, markdown=markdown)


def science_tables(report):
    """The analysis as tables: a list of ``{"caption", "headers", "rows", "align", "note"}``
    (calibration, intervals and McNemar, disagreement, selection), for text, Markdown and HTML."""
    sci, tables = report.science, []
    label = f"ensemble ({report.method}{_tta_suffix(report)})"
    if "calibration" in sci:
        cal = sci["calibration"]
        scaled = report.temperatures is not None and "temperature_scaling" in sci
        before = sci.get("temperature_scaling", {}).get("ece_before", {})
        headers = ["model"] + (["T", "ECE before"] if scaled else []) + ["ECE", "NLL", "Brier"]
        rows = []
        for i, name in enumerate(report.member_names):
            m = cal["members"][name]
            rows.append([name] + ([float(report.temperatures[i]), before.get(name)] if scaled else [])
                        + [m["ece"], m["nll"], m["brier"]])
        e = cal["ensemble"]
        rows.append([label] + ([None, before.get("ensemble")] if scaled else []) + [e["ece"], e["nll"], e["brier"]])
        note = (f"ECE: expected calibration error over {cal['n_bins']} equal-width bins of the top-1 confidence; "
                "NLL: mean -log p(true class); Brier: mean sum over classes of (p - onehot)^2.")
        if scaled:
            ts = report.context.get("temperature_scaling", {})
            where = f" fitted on {ts['fitted_on']}" if ts.get("fitted_on") else ""
            note += (f" T: temperature{where} (p -> softmax(log p / T)); "
                     "'ECE before' is without temperature scaling, on the evaluated faces.")
        tables.append({"caption": "Calibration", "headers": headers, "rows": rows, "note": note})
    if sci.get("bootstrap", {}).get("ensemble") or "mcnemar" in sci:
        boot = sci.get("bootstrap", {})
        have_ci = bool(boot.get("ensemble"))

        def ci(entry, key):
            return f"[{entry[key][0]:.4f}, {entry[key][1]:.4f}]" if entry else None

        headers = ["model", "accuracy"] + (["accuracy 95% CI"] if have_ci else []) + ["macro-F1"] + \
            (["macro-F1 95% CI"] if have_ci else []) + ["b", "c", "McNemar p", "Δacc without"]
        rows = []
        for name, m in zip(report.member_names, report.member_metrics):
            mc = sci.get("mcnemar", {}).get(name, {})
            marginal = sci.get("diversity", {}).get("marginal", {}).get(name, {})
            b_ci = boot.get("members", {}).get(name)
            rows.append([name, m["accuracy"]] + ([ci(b_ci, "accuracy")] if have_ci else []) + [m["macro_f1"]]
                        + ([ci(b_ci, "macro_f1")] if have_ci else [])
                        + [mc.get("b"), mc.get("c"), _p_value(mc.get("p_value")),
                           _signed(marginal.get("change_without"))])
        e = report.metrics
        rows.append([label, e["accuracy"]] + ([ci(boot["ensemble"], "accuracy")] if have_ci else [])
                    + [e["macro_f1"]] + ([ci(boot["ensemble"], "macro_f1")] if have_ci else [])
                    + [None, None, None, None])
        note = ((f"95% percentile bootstrap intervals over {boot['resamples']} resamples of the faces "
                 f"(seed {boot['seed']}); " if have_ci else "")
                + "McNemar: exact two-sided test of each member against the ensemble; b = faces the member "
                "gets right and the ensemble wrong, c = the reverse. Δacc without: ensemble accuracy without "
                "the member minus with it (negative: the member helps).")
        tables.append({"caption": "How sure are the figures", "headers": headers, "rows": rows, "note": note})
    div = sci.get("diversity")
    if div and len(report.member_names) > 1:
        short = [f"m{i + 1}" for i in range(len(report.member_names))]
        rows = [[f"{s} {n}", *map(float, row)] for s, n, row in zip(short, report.member_names,
                                                                    div["disagreement"])]
        tables.append({"caption": "Pairwise disagreement (fraction of faces whose top-1 differ)",
                       "headers": ["member", *short], "rows": rows,
                       "note": f"mean pairwise disagreement {div['mean_pairwise']:.4f}"})
    sel = report.context.get("selection")
    if sel and "evaluated" in sel:
        rows = [[f"{k} members", sel["evaluated"][k]["n_members"], sel["evaluated"][k]["accuracy"],
                 sel["evaluated"][k]["macro_f1"], sel["evaluated"][k]["nll"]] for k in ("all", "selected")]
        chosen = ", ".join(f"{n} {w:.3f}" for n, w in sel["weights"].items() if w > 0)
        tables.append({"caption": f"Greedy selection (fitted on {sel['fitted_on']}) vs all members, "
                                  f"on the evaluated faces", "headers": ["ensemble", "members", "accuracy",
                                                                         "macro-F1", "NLL"],
                       "rows": rows, "note": f"selected weights: {chosen}"})
    overlap = sci.get("overlap")
    if overlap and overlap["faces"]:
        tables.append(_overlap_table(report, overlap, label))
    unc = sci.get("uncertainty")
    if unc and unc.get("mean_entropy") is not None:
        tables.append({"caption": "Per-face uncertainty", "headers": ["figure", "value"],
                       "rows": [["mean entropy of the ensemble (nats)", unc["mean_entropy"]],
                                ["mean member disagreement with the ensemble", unc["mean_member_disagreement"]],
                                ["faces where every member agrees with the ensemble", unc["unanimous_share"]]],
                       "note": "per face in predictions.csv (entropy, member_disagreement)"})
    return tables


def to_text(report):
    """What the CLI prints: member table, confusion matrix, per-class report, the analysis tables."""
    ctx = report.context
    where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
    lines = [f"{where} [{ctx.get('usage', '?')}]: {len(report.y_true)} faces, "
             f"method {report.method}, TTA {tta_describe(report.tta)}", "",
             summary_table(report), ""]
    collapsed = [f"  {name}: predicts {i['collapse']['class']} for {i['collapse']['share']:.0%} of the faces"
                 for name, i in zip(report.member_names, report.member_info) if "collapse" in i]
    if collapsed:
        lines += ["collapsed members (one class for almost every face):"] + collapsed + [""]
    if report.skipped:
        lines += ["skipped:"] + [f"  {s}" for s in report.skipped] + [""]
    lines += ["ensemble confusion matrix (rows: true, columns: predicted):",
              confusion_table(report.metrics["confusion_matrix"], report.class_names), "",
              "ensemble per-class report:", per_class_table(report.metrics, report.class_names)]
    for table in science_tables(report):
        caption = table["caption"]
        lines += ["", f"{caption[:1].lower()}{caption[1:]}:", format_table(table["headers"], table["rows"])]
        if table.get("note"):
            lines += [textwrap.fill(table["note"], width=110)]
    return "\n".join(lines)


def to_markdown(report):
    """``report.md``: every table, and links to the figures beside it."""
    ctx = report.context
    where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
    parts = [f"# Ensemble report: {len(report.member_names)} member(s) on {where} [{ctx.get('usage', '?')}]", "",
             f"- faces: {len(report.y_true)}",
             f"- method: {report.method}; test-time augmentation: {tta_describe(report.tta)}",
             f"- weights: {ctx.get('weights_source', 'uniform')}",
             f"- ensemble accuracy **{report.metrics['accuracy']:.4f}**, macro-F1 "
             f"**{report.metrics['macro_f1']:.4f}**, NLL {report.metrics['nll']:.4f}", "",
             "## Members and ensemble", "", summary_table(report, markdown=True), ""]
    if report.skipped:
        parts += ["## Skipped files", "",
                  format_table(["file", "reason"], [[str(s.path), s.reason] for s in report.skipped],
                               markdown=True, align=["<", "<"]), ""]
    parts += ["## Member inputs", "",
              format_table(["model", "input"], [[n, i["input"]["describe"]] for n, i in
                                                zip(report.member_names, report.member_info)],
                           markdown=True, align=["<", "<"]), "",
              "## Ensemble confusion matrix", "", "Rows: true class; columns: predicted class.", "",
              confusion_table(report.metrics["confusion_matrix"], report.class_names, markdown=True), "",
              "![confusion matrix](confusion_matrix.png)", "",
              "## Ensemble per-class report", "", per_class_table(report.metrics, report.class_names, markdown=True),
              "", "![per-class F1](per_class_f1.png)", ""]
    for table in science_tables(report):
        parts += [f"## {table['caption']}", "", format_table(table["headers"], table["rows"], markdown=True), ""]
        if table.get("note"):
            parts += [table["note"], ""]
        if table["caption"] == "Calibration":
            parts += ["![reliability diagram](reliability.png)", ""]
        elif table["caption"].startswith("Pairwise disagreement"):
            parts += ["![disagreement](disagreement.png)", ""]
    return "\n".join(parts)


def save(report, out_dir, *, overwrite=False, worst=0):
    """Write report.json, report.md, report.html, the figures and predictions.csv into
    ``out_dir`` (created; an existing report is kept unless ``overwrite``).

    ``worst``: also write ``worst.png``, a contact sheet of the ``worst`` most
    confidently wrong faces (needs the faces: ``evaluate(..., keep_faces=True)``).
    """
    out = prepare_output_dir(out_dir, overwrite=overwrite, names=report_files(worst=worst))
    title = f"ensemble of {len(report.member_names)} ({report.method}{_tta_suffix(report)})"
    pngs = []
    figures.save_figure(figures.confusion_figure(report.metrics["confusion_matrix"], report.class_names, title),
                        out / "confusion_matrix.png")
    pngs.append(("ensemble confusion matrix", out / "confusion_matrix.png"))
    f1 = {name: [m["per_class"][c]["f1"] for c in report.class_names]
          for name, m in zip(report.member_names, report.member_metrics)}
    f1["ensemble"] = [report.metrics["per_class"][c]["f1"] for c in report.class_names]
    fig = figures.per_class_f1_figure(f1, report.class_names, title="per-class F1: members vs ensemble")
    figures.save_figure(fig, out / "per_class_f1.png")
    pngs.append(("per-class F1: members vs ensemble", out / "per_class_f1.png"))
    pngs += _save_figures(report, out, worst=worst)
    write_text_atomic(out / "predictions.csv", report.predictions_csv())
    markdown = to_markdown(report)
    if worst:
        markdown += "\n## Most confidently wrong faces\n\n![most confidently wrong faces](worst.png)\n"
    write_text_atomic(out / "report.md", markdown)
    _save_html(report, out / "report.html", pngs)
    write_json_atomic(out / "report.json", report.to_dict())  # last: its presence marks a complete report
    return out


def _save_figures(report, out, *, worst=0):
    """reliability.png, disagreement.png and (``worst`` > 0) worst.png; returns ``[(caption, path)]``."""
    written = []
    cal = report.science.get("calibration")
    if cal is None:  # a report built by hand: work the bins out here
        bins = {n: reliability_bins(report.y_true, p) for n, p in zip(report.member_names, report.member_probas)}
        bins["ensemble"] = reliability_bins(report.y_true, report.probas)
        n_bins = len(bins["ensemble"]["count"])
    else:
        bins = {n: cal["members"][n]["bins"] for n in report.member_names}
        bins["ensemble"] = cal["ensemble"]["bins"]
        n_bins = cal["n_bins"]
    before = report.science.get("temperature_scaling", {}).get("ensemble_before")
    if before is not None:
        bins["ensemble before temperature scaling"] = before["bins"]
    scaled = " (temperature-scaled)" if before is not None else ""
    fig = figures.reliability_figure(bins, title=f"reliability{scaled}: members and ensemble, {n_bins} bins")
    figures.save_figure(fig, out / "reliability.png")
    written.append(("reliability diagram and faces per confidence bin", out / "reliability.png"))

    matrix = report.science.get("diversity", {}).get("disagreement")
    if matrix is None:
        matrix = disagreement_matrix(report.member_probas)
    figures.save_figure(figures.disagreement_figure(matrix, report.member_names), out / "disagreement.png")
    written.append(("pairwise disagreement of the members", out / "disagreement.png"))

    if worst:
        if report.faces is None:
            raise FerError("the contact sheet of mistakes needs the faces (evaluate with keep_faces=True)")
        idx = report.worst_indices(worst)
        names, conf = report.class_names, report.confidence
        captions = [f"#{i} true {names[report.y_true[i]]}\npred {names[report.y_pred[i]]} {conf[i]:.2f}"
                    for i in idx]
        shown = f"{len(idx)} most confidently wrong faces" + \
            (f" (only {len(idx)} wrong of {worst} asked)" if len(idx) < worst else "")
        fig = figures.faces_sheet_figure(report.faces[idx], captions, title=shown)
        figures.save_figure(fig, out / "worst.png")
        written.append((shown, out / "worst.png"))
    return written


def _save_html(report, path, pngs):
    """``report.html``: every table and figure of the report in one self-contained file."""
    ctx = report.context
    where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
    e = report.metrics
    facts = [f"data: {where} [{ctx.get('usage', '?')}], {len(report.y_true)} faces",
             f"method: {report.method}; test-time augmentation: {tta_describe(report.tta)}",
             f"weights: {ctx.get('weights_source', 'uniform')}",
             f"ensemble accuracy {e['accuracy']:.4f}, macro-F1 {e['macro_f1']:.4f}, NLL {e['nll']:.4f}"]
    headers, rows = summary_rows(report)
    sections = [("Members and ensemble", [{"headers": headers, "rows": rows}])]
    if report.skipped:
        sections.append(("Skipped files", [{"headers": ["file", "reason"], "align": ["<", "<"],
                                            "rows": [[str(s.path), s.reason] for s in report.skipped]}]))
    sections += [(t["caption"], [t]) for t in science_tables(report)]
    headers, rows = confusion_rows(e["confusion_matrix"], report.class_names)
    sections.append(("Ensemble confusion matrix", [{"headers": headers, "rows": rows,
                                                    "note": "rows: true class; columns: predicted class"}]))
    headers, rows = per_class_rows(e, report.class_names)
    sections.append(("Ensemble per-class report", [{"headers": headers, "rows": rows,
                                                     "note": MACRO_AVERAGE}]))
    title = f"Ensemble report: {len(report.member_names)} member(s) on {where} [{ctx.get('usage', '?')}]"
    write_html(path, title, facts, [(h, [{**b, "caption": None} for b in blocks]) for h, blocks in sections],
               pngs)


def _overlap_table(report, overlap, label):
    """Each model's accuracy on the faces also in another split (the training split) and on the others."""
    seen, rest, reference = overlap["faces"], overlap["rest"], overlap["reference"]
    headers = ["model", f"accuracy on the {seen} also in {reference}", f"accuracy on the other {rest}",
               f"macro-F1 on the other {rest}"]
    rows = [[name, s["accuracy_seen"], s.get("accuracy_rest"), s.get("macro_f1_rest")]
            for name, s in overlap["members"].items()]
    e = overlap["ensemble"]
    rows.append([label, e["accuracy_seen"], e.get("accuracy_rest"), e.get("macro_f1_rest")])
    share = seen / (seen + rest)
    note = (f"{seen} of the {seen + rest} evaluated faces ({share:.1%}) are, pixel for pixel, faces of "
            f"{reference}: a model that memorised its training faces gets them right, so the figures on the "
            f"other {rest} say more about faces it has never seen.")
    if "ci95_rest" in e:
        low, high = e["ci95_rest"]["accuracy"]
        note += f" Ensemble accuracy on the other {rest}: 95% bootstrap interval [{low:.4f}, {high:.4f}]."
    return {"caption": f"Faces also in {reference}", "headers": headers, "rows": rows, "note": note}


def _p_value(p):
    """A p-value for a table: 4 significant digits, never rounded to 0."""
    if p is None:
        return None
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _signed(value):
    return None if value is None else f"{value:+.4f}"
