"""The machine a figure was measured on, described in one place.

Training summaries, model files, ensemble reports, export reports and the
benchmarks all print the CPU, its cores, the accelerators and the Keras
backend: they read them here, so they agree, and ``/proc/cpuinfo`` is parsed
once per process.
"""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def _cpuinfo():
    """``(model name, flags)`` from /proc/cpuinfo (empty off Linux)."""
    name, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not name and line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif not flags and line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                if name and flags:
                    break
    except OSError:
        pass
    return name, flags


def cpu_flags():
    """The CPU feature flags from /proc/cpuinfo (empty off Linux)."""
    return _cpuinfo()[1]


def cpu_model():
    """Human-readable CPU model, for every figure we print."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def tensorflow_backend():
    """Whether Keras runs on TensorFlow; the JAX backend (a GPU machine without
    TensorFlow) has no tf.data, tf.distribute, tf.summary or op determinism."""
    import keras

    return keras.backend.backend() == "tensorflow"


def gpu_names():
    """The GPUs Keras' backend will use (TensorFlow's, or JAX's under KERAS_BACKEND=jax)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def machine_description():
    """E.g. 'Intel(R) Xeon(R) Processor, 2 cores, amx_bf16' or with the GPU name."""
    import keras

    bf16 = sorted({"amx_bf16", "avx512_bf16"} & cpu_flags())
    text = f"{cpu_model()}, {os.cpu_count()} cores" + (f", {'+'.join(bf16)}" if bf16 else ", no bf16")
    gpus = gpu_names()
    backend = keras.backend.backend()
    return (text + (f"; GPU: {', '.join(gpus)}" if gpus else "")
            + (f"; Keras backend: {backend}" if backend != "tensorflow" else ""))


def machine_info():
    """CPU, core count, TensorFlow/Keras versions and accelerators, for reports."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import keras
        import tensorflow as tf

        info.update(tensorflow=tf.__version__, keras=keras.__version__,
                    gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
    except Exception:  # versions are a courtesy, never a failure
        pass
    return info
