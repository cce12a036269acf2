"""Pick the compute precision for this machine.

bfloat16 matmuls run faster than float32 on CPUs with AMX or AVX512-BF16:
training measured 1.3-1.7x for our from-scratch CNNs and 3.7x for a frozen
ImageNet VGG-16 on Sapphire Rapids (BENCHMARKS.md), though depthwise-heavy
PAtt-Lite and narrow ResEmoteNet ran slower. float16 with loss scaling is
the standard on GPUs. Outputs stay float32 either way: every
model's softmax layer is pinned to float32.
"""

from __future__ import annotations

from fer_keras.machine import cpu_flags, gpu_names

POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def cpu_has_bf16():
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


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
