"""Pick the compute precision for this machine.

bfloat16 matmuls run faster than float32 on CPUs with AMX or AVX512-BF16:
training measured 1.3-1.7x for our from-scratch CNNs and 3.7x for a frozen
ImageNet VGG-16 on Sapphire Rapids (BENCHMARKS.md), though depthwise-heavy
PAtt-Lite and narrow ResEmoteNet ran slower. float16 with loss scaling is
the standard on GPUs. Outputs stay float32 either way: every
model's softmax layer is pinned to float32.
"""

from __future__ import annotations

import functools
import platform

POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@functools.lru_cache(maxsize=1)
def cpu_flags():
    """The CPU feature flags from /proc/cpuinfo (empty off Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model():
    """Human-readable CPU model, for every figure we print."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16():
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def machine_description():
    """E.g. 'Intel(R) Xeon(R) Processor, 2 cores, amx_bf16' or with the GPU name."""
    import os

    import keras

    bf16 = sorted({"amx_bf16", "avx512_bf16"} & cpu_flags())
    text = f"{cpu_model()}, {os.cpu_count()} cores" + (f", {'+'.join(bf16)}" if bf16 else ", no bf16")
    gpus = gpu_names()
    backend = keras.backend.backend()
    return (text + (f"; GPU: {', '.join(gpus)}" if gpus else "")
            + (f"; Keras backend: {backend}" if backend != "tensorflow" else ""))


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


def resolve_policy(choice="auto"):
    """``auto`` → mixed_float16 on a GPU, mixed_bfloat16 on a bf16 CPU, else float32."""
    if choice not in POLICIES:
        raise ValueError(f"precision must be one of {', '.join(POLICIES)}")
    if choice != "auto":
        return choice
    if gpu_names():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def set_policy(choice="auto"):
    """Set Keras' global dtype policy; returns the policy name used."""
    import keras

    policy = resolve_policy(choice)
    keras.mixed_precision.set_global_policy(policy)
    return policy
