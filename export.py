"""Export the ensemble (or one member) for apps, and check every exported file.

Fuses every *.h5 / *.keras in --models-dir (default models/), or the --model
files given, into ONE Keras model (members, input adapters and weighted mean
inside), then writes the --format(s) asked for: keras (.keras + .h5),
savedmodel, tflite (float32, float16, int8) and onnx. Each artefact is run in
its own runtime and compared with the Keras original (export_report.json):

  python export.py
  python export.py --format all --csv data/fer2013.csv --out exported/v1
  python export.py --model models/model_12.h5 --format tflite --tflite-variants int8
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import export_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_cli.main(description=__doc__.split("\n\n")[0]))
