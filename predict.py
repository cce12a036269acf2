"""Find the faces in pictures, folders, videos or a webcam and tell their emotions.

Runs the ensemble of every *.h5 / *.keras in --models-dir (default models/)
or the --model files given. Writes an annotated copy of each picture and
video, an emotion timeline per video, Grad-CAM pictures with --explain, and
predictions.csv / predictions.json (one row per face) into --out. With no
--input it runs on a bundled demo photo:

  python predict.py
  python predict.py --input photo.jpg --explain
  python predict.py --input clip.mp4 --every 5 --out predictions/clip
  python predict.py --input webcam --interval 1
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import predict_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_cli.main(description=__doc__.split("\n\n")[0]))
