"""Training and inference throughput of every registered model, side by side.

For each model and precision (float32, mixed_bfloat16) this times training
steps fed from the real tf.data pipeline with augmentation none/strong, and
the model alone on a fixed in-memory batch, then inference at batch 256 and
single-face latency. Each figure is the median of several timed chunks after
a warm-up, measured in the same process, so ratios are meaningful even on a
shared machine.

    python benchmarks/bench_train.py                       # every model, default small widths
    python benchmarks/bench_train.py --models vgg16 --options vgg16:width=1.0 --json out.json

Each precision runs in a fresh subprocess (Keras' dtype policy is global).

``--distribute`` adds, for each model and precision, ``model.fit`` on the
augmented pipeline with no strategy and with ``tf.distribute.MirroredStrategy``
over two logical CPU devices (what a multi-GPU user runs, on this CPU), and
reports the strategy's overhead: on one CPU both devices share the same
cores, so any difference is the cost of splitting and all-reducing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# CPU-sized defaults: the faithful ResEmoteNet / RMN are 80M / 138M parameters.
DEFAULT_OPTIONS = {
    "vgg16": {"width": 0.5},
    "vgg16_imagenet": {"weights": None},
    "inception_v1": {},
    "resemotenet": {"width": 0.25},
    "patt_lite": {"weights": None, "input_size": 224},
    "residual_masking_net": {"input_size": 96, "width": 0.5},
    "mini_xception": {"width": 2, "input_size": 48},
}


def _median_rate(fn, images_per_call, warmup, repeats):
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(images_per_call / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(model_name, options, policy, *, batch, steps, repeats):
    """All figures for one model under one precision policy (runs in-process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from fer_keras import models
    from fer_keras.data import synthetic
    from fer_keras.training import make_dataset

    keras.mixed_precision.set_global_policy(policy)
    model = models.build(model_name, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    x, y = synthetic.synthetic_faces(batch * steps * 2)
    result = {"model": model_name, "options": options, "policy": policy,
              "parameters": int(model.count_params())}

    # Model alone: the same batch every step (no input pipeline at all).
    xb = x[:batch].astype("float32")
    yb = keras.utils.to_categorical(y[:batch], 7)

    def model_only():
        for _ in range(steps):
            model.train_on_batch(xb, yb)

    result["train_model_only"] = _median_rate(model_only, batch * steps, 1, repeats)
    for augment in ("none", "strong"):
        ds = make_dataset(x, y, batch_size=batch, num_classes=7, training=True, augment=augment)
        iterator = iter(ds.repeat())

        def pipeline():
            for _ in range(steps):
                xs, ys = next(iterator)
                model.train_on_batch(xs, ys)

        result[f"train_pipeline_{augment}"] = _median_rate(pipeline, batch * steps, 1, repeats)
    x256 = x[:256].astype("float32")
    result["infer_batch256"] = _median_rate(lambda: model.predict_on_batch(x256), 256, 2, repeats)
    one = x[:1].astype("float32")
    latencies = []
    for _ in range(5):
        model.predict_on_batch(one)
    for _ in range(50):
        start = time.perf_counter()
        model.predict_on_batch(one)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    result["latency_ms_p50"] = latencies[len(latencies) // 2]
    result["latency_ms_p95"] = latencies[int(len(latencies) * 0.95) - 1]
    return result


def measure_fit(model_name, options, policy, *, batch, steps, repeats, mirrored):
    """img/s of ``model.fit`` on the strong-augmentation pipeline, optionally mirrored over 2 logical CPUs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from fer_keras import models
    from fer_keras.data import synthetic
    from fer_keras.training import make_dataset

    if mirrored:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    else:
        strategy = tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy(policy)
    with strategy.scope():
        model = models.build(model_name, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    x, y = synthetic.synthetic_faces(batch * steps * 2)
    ds = make_dataset(x, y, batch_size=batch, num_classes=7, training=True, augment="strong").repeat()

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    seconds = []
    model.fit(ds, epochs=repeats + 1, steps_per_epoch=steps, callbacks=[EpochTimer()], verbose=0)
    return {"model": model_name, "policy": policy, "mirrored": mirrored,
            "fit_img_per_s": batch * steps / statistics.median(seconds[1:])}  # epoch 1 traces


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    parser.add_argument("--options", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="override a builder option, e.g. vgg16:width=1.0")
    parser.add_argument("--policies", nargs="*", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks (the median is reported)")
    parser.add_argument("--distribute", action="store_true",
                        help="also time model.fit with and without MirroredStrategy over 2 logical CPU devices")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:  # one (model, policy) measurement in this process
        spec = json.loads(args._child)
        fit_mode = spec.pop("fit", False)
        print(json.dumps(measure_fit(**spec) if fit_mode else measure(**spec)))
        return 0

    from fer_keras import models
    from fer_keras.machine import machine_description

    names = args.models or models.available()
    options = {k: dict(v) for k, v in DEFAULT_OPTIONS.items()}
    for text in args.options:
        name, _, kv = text.partition(":")
        key, _, value = kv.partition("=")
        options.setdefault(name, {})[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    def in_child(spec):
        """One measurement in a fresh process (dtype policy and logical devices are process-wide)."""
        out = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)],
                             capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            print(f"{spec['model_name']} {spec['policy']}: failed\n{out.stderr[-1500:]}", file=sys.stderr)
            return None
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows, fit_rows = [], []
    for name in names:
        for policy in args.policies:
            spec = {"model_name": name, "options": options.get(name, {}), "policy": policy,
                    "batch": args.batch, "steps": args.steps, "repeats": args.repeats}
            r = in_child(spec)
            if r is None:
                continue
            rows.append(r)
            print(f"{name:<22}{policy:<16}train {r['train_model_only']:7.0f} img/s (model only)  "
                  f"{r['train_pipeline_none']:7.0f} (pipeline)  {r['train_pipeline_strong']:7.0f} (+strong aug)  "
                  f"infer {r['infer_batch256']:7.0f} img/s  p50 {r['latency_ms_p50']:.1f} ms", flush=True)

    print(f"\nmachine: {machine_description()}   date: {date.today()}   batch {args.batch}")
    print(f"{'model':<22}{'params':>11}{'fp32 train':>12}{'bf16 train':>12}{'bf16/fp32':>10}"
          f"{'aug cost':>10}{'infer bf16':>12}{'p50 ms':>8}{'p95 ms':>8}")
    for name in names:
        by = {r["policy"]: r for r in rows if r["model"] == name}
        if not by:
            continue
        fp, bf = by.get("float32"), by.get("mixed_bfloat16")
        best = bf or fp
        ratio = f"{bf['train_model_only'] / fp['train_model_only']:.2f}x" if fp and bf else "-"
        aug = 1 - best["train_pipeline_strong"] / best["train_model_only"]
        print(f"{name:<22}{best['parameters']:>11,}{(fp or {}).get('train_model_only', 0):>12.0f}"
              f"{(bf or {}).get('train_model_only', 0):>12.0f}{ratio:>10}{aug:>10.0%}"
              f"{best['infer_batch256']:>12.0f}{best['latency_ms_p50']:>8.1f}{best['latency_ms_p95']:>8.1f}")
    if args.distribute:
        print("\nmodel.fit, strong augmentation: no strategy vs MirroredStrategy over 2 logical CPU devices")
        print(f"{'model':<22}{'policy':<16}{'plain img/s':>12}{'mirrored':>10}{'overhead':>10}")
        for name in names:
            for policy in args.policies:
                spec = {"model_name": name, "options": options.get(name, {}), "policy": policy, "fit": True,
                        "batch": args.batch, "steps": args.steps, "repeats": args.repeats}
                plain, mirrored = in_child({**spec, "mirrored": False}), in_child({**spec, "mirrored": True})
                if plain and mirrored:
                    fit_rows += [plain, mirrored]
                    overhead = 1 - mirrored["fit_img_per_s"] / plain["fit_img_per_s"]
                    print(f"{name:<22}{policy:<16}{plain['fit_img_per_s']:>12.0f}{mirrored['fit_img_per_s']:>10.0f}"
                          f"{overhead:>10.0%}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "results": rows, "fit": fit_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
