"""The export stage: a member or the whole ensemble as files apps run, and those files checked.

Every artefact takes what an app has: raw grey faces, **uint8 (N, 48, 48, 1)**,
values 0..255, and returns the 7 FER2013 probabilities in FER2013 class order
(the members' input adapters and class reordering are inside the graph):

    members, _ = load_members("models")
    model = fuse(members)                       # one keras.Model (fer_keras.export.fusion)
    paths = export(model, "exported", formats=("keras", "tflite"), metadata=fused_metadata(members),
                   representative=faces)       # .keras/.h5, SavedModel, TFLite, ONNX (writers)
    rows = verify(model, paths, faces, labels)  # each file in its own runtime vs Keras (verification)
    member = RuntimeModel.from_file("exported/fer_ensemble_int8.tflite")   # (runtime)
    member.predict_proba(faces)                 # (N, 7)

This stage builds on the ensemble (members, weights, TTA views), the models
stage (saving) and the data stage (calibration and check faces); nothing
below it imports it.
"""

from fer_keras.errors import MissingPackageError  # here in fer_keras 0.1; kept so that import path still works
from fer_keras.export.fusion import fuse, fused_metadata, slug
from fer_keras.export.runtime import RUNTIME_SUFFIXES, RuntimeModel, tflite_interpreter_class
from fer_keras.export.verification import (LATENCY_CALLS, REPRESENTATIVE_FACES, file_size, keras_proba,
                                           latency_ms, representative_faces, results_table, validation_faces,
                                           verify, versions)
from fer_keras.export.writers import (FORMATS, INPUT_NAME, OUTPUT_NAME, PIN_BLOCK, TFLITE_VARIANTS, artefact_paths,
                                      check_converters, check_free, export, export_keras, export_onnx,
                                      export_savedmodel, export_tflite, require, tflite_bytes, with_full_input_range)

__all__ = ["FORMATS", "INPUT_NAME", "LATENCY_CALLS", "OUTPUT_NAME", "PIN_BLOCK", "REPRESENTATIVE_FACES",
           "RUNTIME_SUFFIXES", "TFLITE_VARIANTS", "MissingPackageError", "RuntimeModel", "artefact_paths",
           "check_converters", "check_free", "export", "export_keras", "export_onnx", "export_savedmodel",
           "export_tflite", "file_size", "fuse", "fused_metadata", "keras_proba", "latency_ms", "representative_faces",
           "require", "results_table", "slug", "tflite_bytes", "tflite_interpreter_class", "validation_faces",
           "verify", "versions", "with_full_input_range"]
