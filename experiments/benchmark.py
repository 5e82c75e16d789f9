"""Benchmark the training step (float, FAT and uniform side by side) and the input pipeline.

Run:
  python -m experiments.benchmark                      # ResNet-20, batch 128, 32x32
  python -m experiments.benchmark --arch=mobilenetv2 --batch_size=32
  python -m experiments.benchmark --mode=input         # ImageNet training input pipeline
  python -m experiments.benchmark --json               # one JSON object per variant

Train mode times the trainer's jitted step (fat_jax.train.steps.make_train_step with
the architecture's recipe optimizer, data-parallel over every device as the trainer
runs it) on one synthetic batch, so the input pipeline is not part of the figure. The
variants:
  float:   full-precision block convs (the 8-bit stem and head stay, as in every model);
  fat:     FAT at --bits on the --grid;
  uniform: the same quantizers without the frequency transform
           (QuantConfig(use_transform=False)).
Each variant compiles on its first step. Then the warm-up and timed steps of all
variants interleave, one step of each in turn, so a change of machine load during the
run hits every variant alike. A ratio to float is the median over rounds of the
ratio of the two steps of a round.

With --share (default), the fat step is also compiled twice with parts of FAT removed
(fat_jax.benchmarking.ABLATIONS) and timed in the same loop. The per-round
differences give the share of the fat step spent in the weight path (standardize or
mean-centering, frequency transform, weight quantizer) and in the activation
quantizers; the fat and uniform steps give the transform's share. The weight path is
also timed alone as a cross-check.

Input mode times fat_jax.data.train_iterator on imagenet2012 (decode, random resized
crop, flip, normalise, batch) and reports images/s over the process's CPU cores. By
default it prepares miniature archives in a temporary directory; --data_dir points it
at a prepared copy instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging

from experiments import cli  # Sets the TensorFlow log level before TensorFlow loads.

import jax  # noqa: E402  (after experiments.cli)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import common  # noqa: E402
from fat_jax import benchmarking, models, quantizers  # noqa: E402
from fat_jax.quant_config import QuantConfig  # noqa: E402
from fat_jax.train import mesh as mesh_lib  # noqa: E402
from fat_jax.train import optim, steps  # noqa: E402
from fat_jax.train.state import TrainState  # noqa: E402

VARIANTS = ("float", "fat", "uniform")
INPUT_IMAGE_SIZE = 224
# Miniature ImageNet for input mode: 10 synsets of this many training images.
MINIATURE_IMAGES_PER_CLASS = 32

_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "input"],
    "train: time the training step of each variant; input: time the ImageNet training"
    " input pipeline.")
_ARCH = flags.DEFINE_enum("arch", "resnet20", list(models.ARCHITECTURES), "Model architecture.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 128, "Global batch size in images, split over all devices of all processes.")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 0,
    "Input height and width in pixels; 0 selects the architecture's native resolution"
    f" (input mode: {INPUT_IMAGE_SIZE}).")
_STEPS = flags.DEFINE_integer(
    "steps", 10, "Timed steps per variant (input mode: timed batches).")
_WARMUP_STEPS = flags.DEFINE_integer(
    "warmup_steps", 2,
    "Untimed steps per variant after the first one, which compiles (input mode: untimed"
    " batches after the first).")
_VARIANTS = flags.DEFINE_list(
    "variants", list(VARIANTS), f"Variants to time, any of {', '.join(VARIANTS)}.")
_BITS = flags.DEFINE_integer(
    "bits", 4, "Weight and activation bit width of the fat and uniform variants (2 to 8).")
_GRID = flags.DEFINE_enum("grid", "uniform", ["uniform", "log"],
                          "Quantization grid of the fat and uniform variants.")
_SHARE = flags.DEFINE_bool(
    "share", True,
    "Also time the fat step without its weight path and without any quantizer, to"
    " measure their share of the step (two more compilations).")
_JSON = flags.DEFINE_bool(
    "json", False, "Print one JSON object per variant, one per line, instead of a table.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the parameters and the synthetic batch.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    "Input mode: TFDS data directory with imagenet2012 prepared, or to prepare it in from"
    " --manual_dir. Default: a miniature copy prepared in a temporary directory.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None,
    "Input mode: directory of the ImageNet archives, used with --data_dir.")


class FlagError(ValueError):
    """An invalid flag value; the message names the flag and the accepted values."""


@dataclasses.dataclass
class Program:
    """One compiled training step being timed, with its state."""

    # Variant name, or "fat-" plus an ablation name.
    name: str
    step: Callable
    state: Any
    batch: dict
    # Initial variables. The state has its own copy, because steps donate its buffers.
    variables: dict
    quant: QuantConfig
    first_step_s: float = 0.0
    compile_s: float = 0.0
    times: list[float] = dataclasses.field(default_factory=list)
    peak_memory_bytes: int | None = None
    memory_source: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    def run_step(self):
        self.state, metrics = self.step(self.state, self.batch)
        return self.state, metrics


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float | None:
    """Return the 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_fields() -> dict[str, Any]:
    return {
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "jax_version": jax.__version__,
    }


# ---------------------------------------------------------------------------
# Train mode
# ---------------------------------------------------------------------------


def recipe_config(arch: str, variant: str, bits: int, grid: str):
    """Return the training config of the architecture's recipe for the variant's bits."""
    arg = f"bits={32 if variant == 'float' else bits},grid={grid}"
    if models.architecture(arch).family == "cifar":
        return common.cifar10_config(arch, arg)
    return common.imagenet_config(arch, arg)


def variant_quant(config, variant: str):
    return QuantConfig(**config.quant.to_dict(), use_transform=variant != "uniform")


def build_program(name: str, variant: str, *, arch: str, batch: dict, image_size: int,
                  bits: int, grid: str, seed: int, mesh, ablation: str | None = None,
                  variables: dict | None = None) -> Program:
    """Build the model, optimizer, state and jitted train step of a variant.

    `variables` (for example another program's `variables`) skips the initialisation;
    the state gets its own copy, because every step donates the state's buffers.
    """
    config = recipe_config(arch, variant, bits, grid)
    quant = variant_quant(config, variant)
    model = models.create(arch, num_classes=num_classes(arch), quant=quant)
    replicated = mesh_lib.replicated(mesh)

    if variables is None:
        images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
        variables = jax.jit(lambda key: model.init(key, images, train=False),
                            out_shardings=replicated)(jax.random.key(seed))
    groups = optim.groups_from_config(
        {group: config.optimizer.groups[group] for group in config.optimizer.group_order})
    # The schedule boundaries do not change the cost of a step.
    tx, schedules = optim.create_optimizer(
        variables["params"], groups, momentum=config.optimizer.momentum,
        nesterov=config.optimizer.nesterov, steps_per_epoch=1000,
        decay_epochs=config.optimizer.decay_epochs, decay_factor=config.optimizer.decay_factor)
    state = jax.jit(lambda v: TrainState.create(jax.tree.map(jnp.copy, v), tx),
                    out_shardings=replicated)(variables)

    train_step = steps.make_train_step(model, tx, schedules=schedules, seed=seed,
                                       label_smoothing=config.label_smoothing)
    if ablation is not None:
        train_step = ablated(train_step, ablation)
    step = jax.jit(train_step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)
    return Program(name=name, step=step, state=state, batch=batch, variables=variables,
                   quant=quant)


def ablated(train_step: Callable, ablation: str) -> Callable:
    """Wrap a train step so that it traces the model under a FAT ablation."""

    def ablated_step(state, batch):
        with benchmarking.ablate_quantized_convs(ablation):
            return train_step(state, batch)

    return ablated_step


def num_classes(arch: str) -> int:
    return 10 if models.architecture(arch).family == "cifar" else 1000


def synthetic_batch(mesh, batch_size: int, image_size: int, classes: int, seed: int) -> dict:
    """Return one global batch of normal-noise images and uniform labels on the mesh."""
    local = batch_size // jax.process_count()
    rng = np.random.default_rng([seed, jax.process_index()])
    return mesh_lib.global_batch(mesh, {
        "image": rng.standard_normal((local, image_size, image_size, 3), np.float32),
        "label": rng.integers(0, classes, local, dtype=np.int32),
    })


def check_train_flags(variants: list[str], batch_size: int, steps: int, warmup_steps: int,
                      bits: int, image_size: int, device_count: int) -> None:
    """Raise FlagError naming the first invalid train-mode flag."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants or len(set(variants)) != len(variants):
        raise FlagError(f"Invalid --variants={','.join(variants)}: expected distinct names"
                         f" from {', '.join(VARIANTS)}.")
    if batch_size < 1 or batch_size % device_count:
        raise FlagError(f"Invalid --batch_size={batch_size}: expected a positive multiple of"
                         f" the device count ({device_count}).")
    if steps < 1:
        raise FlagError(f"Invalid --steps={steps}: expected at least 1.")
    if warmup_steps < 0:
        raise FlagError(f"Invalid --warmup_steps={warmup_steps}: expected 0 or more.")
    if image_size < 0:
        raise FlagError(f"Invalid --image_size={image_size}: expected a positive size, or 0"
                         " for the native resolution.")
    try:
        quantizers.check_bits(bits, "--bits")
    except ValueError as error:
        raise FlagError(str(error)) from None


def time_programs(programs: list[Program], warmup_steps: int, steps: int, recorder) -> None:
    """Compile each program on its first step, then time all of them interleaved."""
    for program in programs:
        recorder.label = (program.name, "first")
        start = time.perf_counter()
        jax.block_until_ready(program.run_step())
        program.first_step_s = time.perf_counter() - start
        program.compile_s = recorder.seconds((program.name, "first"))
        logging.info("%s: first step %.2f s, of which %.2f s tracing and compiling.",
                     program.name, program.first_step_s, program.compile_s)

    for round_index in range(warmup_steps + steps):
        timed = round_index >= warmup_steps
        # Alternate the order, so no program always runs right after the same other one.
        order = programs if round_index % 2 == 0 else programs[::-1]
        for program in order:
            recorder.label = (program.name, "timed" if timed else "warmup")
            start = time.perf_counter()
            jax.block_until_ready(program.run_step())
            if timed:
                program.times.append(time.perf_counter() - start)
        if timed:
            logging.info("Timed round %d of %d: %s.", round_index - warmup_steps + 1, steps,
                         ", ".join(f"{p.name} {p.times[-1]:.3f} s" for p in programs))


def paired_median(fn: Callable[..., float], *programs: Program) -> float:
    """Return the median over timed rounds of `fn(time of each program in that round)`.

    The programs' steps of one round run back to back, so a ratio or difference
    within a round cancels most of a change of machine load between rounds.
    """
    return statistics.median(fn(*times) for times in zip(*(p.times for p in programs)))


def fat_share(programs: dict[str, Program], repeats: int) -> dict[str, Any]:
    """Return the shares of the fat step spent in the transform and the quantizers."""
    fat = programs["fat"]
    share: dict[str, Any] = {
        "method": "ablation: the fat step is timed in the same interleaved loop with the"
                  " weight path removed and with every quantizer removed; a share is the"
                  " median over rounds of the time difference divided by that round's fat"
                  " step. The weight path (forward and backward of every quantized conv's"
                  " weight) is also timed alone",
    }
    if "fat-no_weight_path" in programs and "fat-no_quantizers" in programs:
        no_weight_path = programs["fat-no_weight_path"]
        no_quantizers = programs["fat-no_quantizers"]
        share.update(
            step_without_weight_path_s=no_weight_path.median_s,
            step_without_quantizers_s=no_quantizers.median_s,
            weight_path_share=paired_median(lambda f, w: 1 - w / f, fat, no_weight_path),
            activation_quantizer_share=paired_median(lambda f, w, q: (w - q) / f, fat,
                                                     no_weight_path, no_quantizers),
            transform_and_quantizers_share=paired_median(lambda f, q: 1 - q / f, fat,
                                                         no_quantizers),
        )
    if "uniform" in programs:
        share["transform_share"] = paired_median(lambda f, u: 1 - u / f, fat,
                                                 programs["uniform"])
    isolated_s, convs = benchmarking.time_weight_path(fat.variables["params"], fat.quant,
                                                      repeats=repeats)
    share.update(weight_path_alone_s=isolated_s, weight_path_alone_share=isolated_s / fat.median_s,
                 quantized_convs=convs)
    return share


def run_train_benchmark(*, arch: str, variants: list[str], batch_size: int, image_size: int,
                        steps: int, warmup_steps: int, bits: int, grid: str, share: bool,
                        seed: int) -> list[dict[str, Any]]:
    """Time the training step of each variant; return one result dict per variant."""
    image_size = image_size or models.architecture(arch).resolution
    check_train_flags(variants, batch_size, steps, warmup_steps, bits, image_size,
                      jax.device_count())
    load_start = load_average()
    mesh = mesh_lib.create_mesh()
    batch = synthetic_batch(mesh, batch_size, image_size, num_classes(arch), seed)
    plan = [(variant, variant, None) for variant in variants]
    if share and "fat" in variants:
        plan += [(f"fat-{ablation}", "fat", ablation) for ablation in benchmarking.ABLATIONS]

    with benchmarking.CompileRecorder() as recorder:
        programs = []
        for name, variant, ablation in plan:
            recorder.label = (name, "setup")
            # The ablations start from the fat variant's parameters.
            shared = programs[variants.index("fat")].variables if ablation else None
            programs.append(build_program(
                name, variant, arch=arch, batch=batch, image_size=image_size, bits=bits,
                grid=grid, seed=seed, mesh=mesh, ablation=ablation, variables=shared))
        time_programs(programs, warmup_steps, steps, recorder)
        for program in programs:
            if program.name in variants:
                recorder.label = (program.name, "memory")
                _, program.peak_memory_bytes, program.memory_source = (
                    benchmarking.run_with_peak_memory(program.run_step))
    load_end = load_average()

    by_name = {program.name: program for program in programs}
    machine = machine_fields()
    results = []
    for variant in variants:
        program = by_name[variant]
        recompiles = [event for phase in ("warmup", "timed", "memory")
                      for event in recorder.select((variant, phase), stage="compile")]
        result = {
            "mode": "train",
            "arch": arch,
            "variant": variant,
            "bits": "float" if variant == "float" else f"W{bits}A{bits}",
            "grid": None if variant == "float" else grid,
            "transform": variant == "fat",
            "batch": batch_size,
            "resolution": image_size,
            **machine,
            "step_time_s": program.median_s,
            "step_time_min_s": min(program.times),
            "step_time_max_s": max(program.times),
            "first_step_s": program.first_step_s,
            "images_per_s": batch_size / program.median_s,
            "compile_s": program.compile_s,
            "compiles_after_first_step": len(recompiles),
            "timed_steps": steps,
            "warmup_steps": warmup_steps,
            "peak_memory_bytes": program.peak_memory_bytes,
            "memory_source": program.memory_source,
            "compilation_cache": bool(jax.config.jax_compilation_cache_dir),
            "load_average_start": load_start,
            "load_average_end": load_end,
        }
        if "float" in by_name:
            result["ratio_to_float"] = paired_median(lambda v, f: v / f, program,
                                                     by_name["float"])
            result["ratio_of_medians_to_float"] = program.median_s / by_name["float"].median_s
        if variant == "fat" and share:
            result["share"] = fat_share(by_name, repeats=max(steps, 5))
        results.append(result)
    return results


# ---------------------------------------------------------------------------
# Input mode
# ---------------------------------------------------------------------------


def mean_jpeg_bytes(manual_dir: str) -> float | None:
    """Return the mean JPEG size of the ImageNet training archive, or None if absent."""
    path = os.path.join(manual_dir, "ILSVRC2012_img_train.tar")
    if not os.path.isfile(path):
        return None
    sizes = []
    with tarfile.open(path) as archive:
        for member in archive:
            inner_file = archive.extractfile(member)
            if inner_file is None:
                continue
            with tarfile.open(fileobj=inner_file) as inner:
                sizes.extend(image.size for image in inner if image.isfile())
    return statistics.mean(sizes) if sizes else None


def run_input_benchmark(*, batch_size: int, image_size: int, batches: int, warmup_batches: int,
                        seed: int, data_dir: str | None, manual_dir: str | None
                        ) -> dict[str, Any]:
    """Time the imagenet2012 training pipeline of this process; return one result dict."""
    from fat_jax import data

    if batch_size < 1 or batches < 1 or warmup_batches < 0:
        raise FlagError(f"Invalid --batch_size={batch_size}, --steps={batches} or"
                         f" --warmup_steps={warmup_batches}: expected positive sizes.")
    image_size = image_size or INPUT_IMAGE_SIZE
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="fat_jax_benchmark_") as tmp_dir:
        start = time.perf_counter()
        miniature = data_dir is None
        if miniature:
            data_dir, manual_dir = data.prepare_miniature_imagenet(
                tmp_dir, num_classes=10, train_per_class=MINIATURE_IMAGES_PER_CLASS)
        prepare_s = time.perf_counter() - start

        start = time.perf_counter()
        iterator = data.train_iterator(
            "imagenet2012", global_batch_size=batch_size, seed=seed, image_size=image_size,
            data_dir=data_dir, manual_dir=manual_dir, process_index=0, process_count=1)
        next(iterator)
        first_batch_s = time.perf_counter() - start
        for _ in range(warmup_batches):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - start
        jpeg_bytes = mean_jpeg_bytes(manual_dir) if manual_dir else None

    images_per_s = batches * batch_size / elapsed
    cores = cpu_cores()
    return {
        "mode": "input",
        "dataset": "imagenet2012 (miniature)" if miniature else "imagenet2012",
        "pipeline": "decode, random resized crop, flip, normalise, batch",
        "batch": batch_size,
        "resolution": image_size,
        "timed_batches": batches,
        "warmup_batches": warmup_batches,
        "images_per_s": images_per_s,
        "images_per_s_per_core": images_per_s / cores,
        "cpu_cores": cores,
        "cpu": cpu_model(),
        "first_batch_s": first_batch_s,
        "prepare_s": prepare_s,
        "mean_jpeg_bytes": jpeg_bytes,
        "load_average_start": load_start,
        "load_average_end": load_average(),
    }


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def format_bytes(count: int | None) -> str:
    if count is None:
        return "n/a"
    return f"{count / 2**30:.2f} GiB"


def train_table(results: list[dict[str, Any]]) -> str:
    """Format train-mode results as a readable table with a header and notes."""
    first = results[0]
    lines = [
        f"Training step: {first['arch']}, global batch {first['batch']} at"
        f" {first['resolution']}x{first['resolution']}, {first['devices']}"
        f" {first['backend']} device(s) in {first['processes']} process(es), {first['cpu']}"
        f" ({first['cpu_cores']} cores), jax {first['jax_version']}",
        f"Load average (1 min): {first['load_average_start']} at start,"
        f" {first['load_average_end']} at end",
        "",
        f"{'variant':<9}{'bits':<14}{'compile':>9}{'first step':>12}"
        f"{'step median [min, max]':>29}{'images/s':>10}{'vs float':>10}  peak memory",
    ]
    for result in results:
        bits = result["bits"] if result["grid"] is None else f"{result['bits']} {result['grid']}"
        ratio = result.get("ratio_to_float")
        lines.append(
            f"{result['variant']:<9}{bits:<14}{result['compile_s']:>8.1f}s"
            f"{result['first_step_s']:>11.2f}s"
            f"{result['step_time_s']:>12.3f}s [{result['step_time_min_s']:.3f},"
            f" {result['step_time_max_s']:.3f}]"
            f"{result['images_per_s']:>10.1f}{'' if ratio is None else f'{ratio:.3f}':>10}"
            f"  {format_bytes(result['peak_memory_bytes'])} ({result['memory_source']})")
    lines.append("")
    for result in results:
        share = result.get("share")
        if not share:
            continue
        parts = []
        if "weight_path_share" in share:
            parts += [f"weight path (standardize, transform, weight quantizer)"
                      f" {100 * share['weight_path_share']:.1f}%",
                      f"activation quantizers {100 * share['activation_quantizer_share']:.1f}%",
                      f"together {100 * share['transform_and_quantizers_share']:.1f}%"]
        if "transform_share" in share:
            parts.append(f"transform alone (fat vs uniform) {100 * share['transform_share']:.1f}%")
        parts.append(f"weight path timed alone {1000 * share['weight_path_alone_s']:.1f} ms"
                     f" ({100 * share['weight_path_alone_share']:.1f}%,"
                     f" {share['quantized_convs']} quantized convs)")
        lines.append("Share of the fat step: " + "; ".join(parts) + ".")
        lines.append("Method: " + share["method"] + ". Differences within the step-time"
                     " spread are noise; a negative share means the part costs less than it.")
    recompiled = [r["variant"] for r in results if r["compiles_after_first_step"]]
    lines.append("Compilations after the first step: "
                 + (f"in {', '.join(recompiled)}." if recompiled else "none."))
    return "\n".join(lines)


def input_table(result: dict[str, Any]) -> str:
    jpeg = result["mean_jpeg_bytes"]
    return "\n".join([
        f"Input pipeline: {result['dataset']}, {result['pipeline']},"
        f" batch {result['batch']} at {result['resolution']}x{result['resolution']}",
        f"CPU: {result['cpu']}, {result['cpu_cores']} cores; load average (1 min):"
        f" {result['load_average_start']} at start, {result['load_average_end']} at end",
        f"{result['images_per_s']:.1f} images/s, {result['images_per_s_per_core']:.1f} images/s"
        f" per core over {result['timed_batches']} batches (first batch"
        f" {result['first_batch_s']:.1f} s, preparing the data {result['prepare_s']:.1f} s)",
        "Mean JPEG size: " + ("n/a" if jpeg is None else f"{jpeg / 1024:.1f} KiB"),
    ])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.setup_logging()
    cli.init_distributed()
    try:
        if _MODE.value == "input":
            results = [run_input_benchmark(
                batch_size=_BATCH_SIZE.value, image_size=_IMAGE_SIZE.value,
                batches=_STEPS.value, warmup_batches=_WARMUP_STEPS.value, seed=_SEED.value,
                data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)]
        else:
            results = run_train_benchmark(
                arch=_ARCH.value, variants=_VARIANTS.value, batch_size=_BATCH_SIZE.value,
                image_size=_IMAGE_SIZE.value, steps=_STEPS.value,
                warmup_steps=_WARMUP_STEPS.value, bits=_BITS.value, grid=_GRID.value,
                share=_SHARE.value, seed=_SEED.value)
    except FlagError as error:
        cli.fail(str(error))
    except FileNotFoundError as error:  # Includes the missing ImageNet archives.
        cli.fail(str(error))
    if jax.process_index() != 0:
        return
    if _JSON.value:
        for result in results:
            print(json.dumps(result), flush=True)
    elif _MODE.value == "input":
        print(input_table(results[0]), flush=True)
    else:
        print(train_table(results), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
