"""The ensemble stage: saved classifiers as members, combined, evaluated and explained.

Usage, in scikit-learn's spirit::

    ens = Ensemble.from_dir("models")          # every *.h5 / *.keras file of the folder
    ens.predict_proba(x, tta=True)             # (N, 7) ensemble probabilities
    ens.member_probas(x, tta=True)             # (M, N, 7), cached: no second prediction
    members, skipped = load_members("models")  # the members themselves, and what was skipped
    report = evaluate(Ensemble(members), x, y, tta=True, skipped=skipped)
    report.save("reports/run1")

One module per job: :mod:`~fer_keras.ensemble.members` (loading any Keras
classifier and adapting its input), :mod:`~fer_keras.ensemble.tta`,
:mod:`~fer_keras.ensemble.combine` (a leaf: methods, weights, class sets),
:mod:`~fer_keras.ensemble.estimator` (:class:`Ensemble`),
:mod:`~fer_keras.ensemble.weights_file`, and the evaluation:
:mod:`~fer_keras.ensemble.evaluation`, :mod:`~fer_keras.ensemble.analysis`
(over :mod:`~fer_keras.ensemble.calibration`, :mod:`~fer_keras.ensemble.stats`
and :mod:`~fer_keras.ensemble.selection`), :mod:`~fer_keras.ensemble.report`
(the figures) and :mod:`~fer_keras.ensemble.display` (text, Markdown, HTML,
PNGs). The member-probability matrix (M, N, C) is the common input of
everything after prediction.

This stage imports the models stage (to load files) and the shared modules;
never training, inference or export code.
"""

from fer_keras.ensemble.analysis import analyse_probas
from fer_keras.ensemble.combine import (CLASS_COUNTS, CLASS_MAPS, METHODS, combine_probas, drop_contempt,
                                        evaluation_classes, fit_weights, member_keys)
from fer_keras.ensemble.display import REPORT_FILES, report_files
from fer_keras.ensemble.estimator import Ensemble, faces_fingerprint
from fer_keras.ensemble.evaluation import evaluate
from fer_keras.ensemble.members import (BATCH_SIZE, DISTILLED_REASON, FUSED_REASON, InputAdapter, Member, Skipped,
                                        distilled_member, find_model_files, load_members)
from fer_keras.ensemble.report import EnsembleReport
from fer_keras.ensemble.weights_file import (CALIBRATION_FILE, folder_temperatures, read_weights, read_weights_file,
                                             write_temperatures, write_weights)
from fer_keras.machine import machine_info  # here in fer_keras 0.1; kept so that import path still works

__all__ = ["BATCH_SIZE", "CALIBRATION_FILE", "CLASS_COUNTS", "CLASS_MAPS", "DISTILLED_REASON", "FUSED_REASON",
           "METHODS", "REPORT_FILES", "Ensemble", "EnsembleReport", "InputAdapter", "Member", "Skipped", "analyse_probas",
           "combine_probas", "distilled_member", "drop_contempt", "evaluate", "evaluation_classes",
           "faces_fingerprint", "find_model_files",
           "fit_weights", "folder_temperatures", "load_members", "machine_info", "member_keys", "read_weights",
           "read_weights_file", "report_files", "write_temperatures", "write_weights"]
