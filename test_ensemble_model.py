"""Evaluate every saved model and their ensemble on a FER2013 split.

Members: every *.h5 / *.keras in --models-dir (natural order) plus --model
FILE; any Keras 7-way classifier works (input size, colour, scale and class
order are adapted per file). Prints a table per member and for the ensemble,
the confusion matrix and a per-class report; writes report.json, report.md,
figures and predictions.csv into --out.

  python test_ensemble_model.py --csv data/fer2013.csv --usage PrivateTest --models-dir models --out reports/final
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import ensemble_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(ensemble_cli.main(description=__doc__.split("\n\n")[0]))
