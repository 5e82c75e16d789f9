"""Measurement tools for benchmarks and tests: compile events, peak memory, FAT ablations.

- `CompileRecorder` records JAX's tracing, lowering and XLA compilation events, to time
  compilation and to check that a loop compiles nothing after its first pass.
- `run_with_peak_memory` runs a function and reports the peak memory it reached, from
  the accelerator's allocator statistics or else from the host's peak resident set.
- `ablate_quantized_convs` makes FAT and uniform quantized convs skip their weight path
  or all of their quantizers while tracing, so a step can be timed with and without
  them. The parameters stay the same, so the ablated step is the full step minus
  exactly those operations.
- `time_weight_path` times the weight path of every quantized conv on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fat_jax import layers, quantizers, transform
from fat_jax.quant_config import QuantConfig

# Event names of jax.monitoring (jax._src.dispatch), one per stage of a jit compilation.
COMPILE_STAGES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}

ABLATIONS = ("no_weight_path", "no_quantizers")
"""Ablations of `ablate_quantized_convs`, each removing part of every quantized conv.

no_weight_path: the conv uses its raw kernel (no standardize or mean-centering, no
    frequency transform, no weight quantizer); the input quantizer stays.
no_quantizers: the conv is a plain conv on its raw kernel and raw input.
"""

MEMORY_SOURCES = {
    "device_peak_bytes_in_use": "device allocator peak (max over local devices, since"
                                " the process started)",
    "host_peak_rss_call": "host peak resident set of the whole process during the call",
    "host_peak_rss_process": "host peak resident set of the whole process since it started",
}
"""Meaning of each memory source name that `run_with_peak_memory` returns."""


# ---------------------------------------------------------------------------
# Compilation events
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CompileEvent:
    """One tracing, lowering or XLA compilation of a function."""

    # "trace", "lower" or "compile" (an XLA compilation, or a persistent-cache hit).
    stage: str
    # Name of the jitted function, as JAX reports it.
    function: str
    seconds: float
    # The recorder's `label` when the event happened.
    label: Any


class CompileRecorder:
    """Record JAX's compilation events while active, as a context manager.

    Every event carries the recorder's `label` at the time it happened; set the label
    before each phase of the measured code (for example a step number) to tell later
    which phase compiled what. Events come from every thread of the process.
    """

    def __init__(self, label: Any = None):
        self.label = label
        self.events: list[CompileEvent] = []

    def _listener(self, event: str, duration_secs: float, **kwargs) -> None:
        stage = COMPILE_STAGES.get(event)
        if stage is not None:
            self.events.append(CompileEvent(stage, str(kwargs.get("fun_name", "?")),
                                            float(duration_secs), self.label))

    def __enter__(self) -> "CompileRecorder":
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc_info) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)

    def select(self, label: Any = None, stage: str | None = None) -> list[CompileEvent]:
        """Return the events with `label` (any label if None) and `stage` (any if None)."""
        return [event for event in self.events
                if (label is None or event.label == label)
                and (stage is None or event.stage == stage)]

    def seconds(self, label: Any = None) -> float:
        """Return the time spent tracing, lowering and compiling under `label`."""
        return sum(event.seconds for event in self.select(label))


# ---------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------


def _device_peaks() -> list[int] | None:
    """Return each local device's allocator peak, or None where a device reports none."""
    peaks = []
    for device in jax.local_devices():
        stats = device.memory_stats()
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        peaks.append(int(stats["peak_bytes_in_use"]))
    return peaks


def _release_free_heap() -> None:
    """Return freed malloc memory to the OS (glibc), so the resident set is live memory."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _reset_host_peak() -> bool:
    """Reset the process's peak resident set (Linux VmHWM); return whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def _host_peak_since_reset() -> int | None:
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _host_peak_since_start() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak if sys.platform == "darwin" else peak * 1024


def run_with_peak_memory(fn: Callable[[], Any]) -> tuple[Any, int, str]:
    """Run `fn()` and return `(result, peak_bytes, source)`; see MEMORY_SOURCES.

    Accelerators report their allocator's peak, which covers the whole process so far
    (JAX has no reset), so run one configuration per process for a clean figure. On a
    CPU backend the host's peak resident set is reset before the call where Linux
    allows it; the figure then includes everything the process holds (Python, JAX,
    compiled programs, other live arrays), not only this call's buffers.
    """
    if _device_peaks() is not None:
        result = jax.block_until_ready(fn())
        return result, max(_device_peaks()), "device_peak_bytes_in_use"
    _release_free_heap()
    reset = _reset_host_peak()
    result = jax.block_until_ready(fn())
    peak = _host_peak_since_reset() if reset else None
    if peak is not None:
        return result, peak, "host_peak_rss_call"
    return result, _host_peak_since_start(), "host_peak_rss_process"


# ---------------------------------------------------------------------------
# FAT ablations
# ---------------------------------------------------------------------------


def ablate_quantized_convs(ablation: str) -> contextlib.AbstractContextManager:
    """Return a context manager under which quantized convs skip part of their work.

    Applies to `FATConv` and `UniformQuantConv` calls traced inside the context (wrap
    the body of the function that is jitted). The layers keep their parameters, whose
    gradients become zero where the ablation removes their use. Initialisation (no
    kernel yet) runs the layers unchanged. See ABLATIONS for what each option removes.
    """
    quantizers.check_choice(ablation, ABLATIONS, "ablation")

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        quantized = isinstance(module, (layers.FATConv, layers.UniformQuantConv))
        if (context.method_name != "__call__" or not quantized
                or not module.has_variable("params", "kernel")):
            return next_fun(*args, **kwargs)
        (x,) = args
        kernel = module.get_variable("params", "kernel")
        if ablation == "no_weight_path":
            x = layers.quantize_input(x, module.get_variable("params", "act_alpha"),
                                      module.quant, module.signed_input)
        return module._conv(x, kernel)  # pylint: disable=protected-access

    return nn.intercept_methods(interceptor)


def _quantized_conv_params(params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Yield the parameter dict of every FAT or uniform quantized conv."""
    if not isinstance(params, Mapping):
        return
    if "kernel" in params and "weight_alpha" in params:
        yield params
    for child in params.values():
        yield from _quantized_conv_params(child)


def quantized_weights(params: Mapping[str, Any], quant: QuantConfig) -> list[jax.Array]:
    """Return the quantized weight of every quantized conv in `params`, as the layers do.

    A conv with a `transform` is a FAT conv (standardize, frequency transform, weight
    quantizer). One without is taken for a uniform quantized conv (mean-centering and
    the weight quantizer). NOTE: under `quant.use_transform=False` FAT convs also have
    no transform; they standardize rather than centre, one reduction more than timed here.
    """
    weights = []
    for conv in _quantized_conv_params(params):
        if "transform" in conv:
            weight = layers.fat_weight(conv["kernel"], conv["transform"], conv["weight_alpha"],
                                       quant)
        else:
            weight = quantizers.quantize_weight(
                transform.center(conv["kernel"]), conv["weight_alpha"], quant.weight_bits,
                quant.grid)
        weights.append(weight)
    return weights


def time_weight_path(params: Mapping[str, Any], quant: QuantConfig, *,
                     repeats: int = 20) -> tuple[float, int]:
    """Time the forward and backward pass of every quantized conv's weight path.

    Jits the gradient of the sum of all quantized weights with respect to the
    parameters, runs it once to compile, then `repeats` times. Returns the median
    seconds per call and the number of quantized convs. The step runs the same
    operations, but fused with its other work, so this is an estimate of their cost
    inside the step, not a measurement of it.
    """
    if repeats < 1:
        raise ValueError(f"Invalid repeats={repeats!r}: expected a positive integer.")

    def total(tree):
        return sum(jnp.sum(weight) for weight in quantized_weights(tree, quant))

    count = len(list(_quantized_conv_params(params)))
    if count == 0:
        return 0.0, 0
    grad = jax.jit(jax.grad(total))
    jax.block_until_ready(grad(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(params))
        times.append(time.perf_counter() - start)
    return statistics.median(times), count
