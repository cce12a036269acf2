"""See yourself, live: the webcam in your browser with a box and an emotion per face, a photo upload, and a
REST API, served from this machine.

Loads the ensemble of --models-dir (default models/) once for pictures and the
member distilled from it for the live view, then serves the page and the API
on http://127.0.0.1:8000/ (nothing is loaded from the internet):

  python serve.py
  python serve.py --port 8080 --tta
  curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import serve_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(serve_cli.main(description=__doc__.split("\n\n")[0]))
