"""Weight, activation and 8-bit quantizers with the reference's gradient rules.

Every quantizer maps its input onto a fixed grid scaled by a learned clip `alpha` and
returns values in the input's dtype. The forward values and the hand-written backward
rules follow the FAT reference implementation (PyTorch) exactly. The `lower_clip`
modes other than "none" and `quantize_int8(strict=True)` are the strict variants that
make every layer a true b-bit layer.

Grids, with x = input / alpha:
- uniform weights: `sign(x) * round(|clip(x, -1, 1)| * n) / n`, n = 2^(b-1) - 1,
  so 2^b - 1 symmetric levels (b = 4: steps of 1/7; b = 2: ternary).
- uniform activations: `round(min(x, 1) * m) / m`, m = 2^b - 1, so 2^b levels on [0, 1].
- log weights: the level of {0} U {2^-j : j = 0 .. 2^(b-1) - 2} nearest to |x| in linear
  distance, with the sign of x.
- log activations: the same with j = 0 .. 2^b - 2.
`round` is round-half-to-even, as `torch.round`. On the log grid an input exactly
halfway between two levels goes to the lower one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

GRIDS = ("uniform", "log")
"""Quantization grids: evenly spaced levels, or powers of two."""

ALPHA_GRADS = ("lsq", "pact")
"""Activation alpha gradient rules: LSQ-like (CIFAR-10 recipe), PACT-like (ImageNet)."""

LOWER_CLIPS = ("none", "zero", "signed")
"""Activation lower clip: none (reference), [0, alpha], or a signed grid on [-alpha, alpha]."""

MIN_BITS = 2
MAX_BITS = 8

INT8_LEVELS = 127
"""Largest 8-bit code magnitude of the first and last layers."""


def _is_whole_number(value) -> bool:
    """Return whether `value` is a real number with no fractional part (not a bool or str)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return False
    try:
        return float(value).is_integer()
    except (TypeError, ValueError):
        return False


def check_bits(bits: int, name: str = "bits") -> int:
    """Return `bits` as an int, or raise ValueError unless it is a whole number in 2..8."""
    if not _is_whole_number(bits) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"Invalid {name}={bits!r}: expected an integer from {MIN_BITS} to {MAX_BITS}.")
    return int(bits)


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """Return `value`, or raise ValueError naming the accepted choices."""
    if value not in choices:
        raise ValueError(f"Invalid {name}={value!r}: expected one of {', '.join(choices)}.")
    return value


def log_levels(num_nonzero: int) -> np.ndarray:
    """Return the sorted log grid {0} U {2^-j : j = 0 .. num_nonzero - 1} in float64."""
    powers = 2.0 ** -np.arange(num_nonzero - 1, -1, -1, dtype=np.float64)
    return np.concatenate([[0.0], powers])


def weight_log_levels(bits: int) -> np.ndarray:
    """Return the non-negative log levels of a b-bit weight (one sign bit)."""
    return log_levels(2 ** (check_bits(bits) - 1) - 1)


def activation_log_levels(bits: int) -> np.ndarray:
    """Return the log levels of a b-bit non-negative activation.

    NOTE: at b = 8 the levels 2^-j for j > 126 are below float32's smallest normal
    number and flush to zero on most backends, so fewer distinct levels remain.
    """
    return log_levels(2 ** check_bits(bits) - 1)


def _nearest_level(magnitude: jax.Array, levels: np.ndarray) -> jax.Array:
    """Round each non-negative value to the nearest level by a search over midpoints."""
    levels_arr = jnp.asarray(levels, dtype=magnitude.dtype)
    midpoints = jnp.asarray((levels[1:] + levels[:-1]) / 2, dtype=magnitude.dtype)
    # side="left" sends a value equal to a midpoint to the lower level.
    index = jnp.searchsorted(midpoints, magnitude, side="left", method="scan_unrolled")
    return levels_arr[index]


def _uniform_magnitude(magnitude: jax.Array, steps: int) -> jax.Array:
    return jnp.round(magnitude * steps) / steps


def _signed_grid(x: jax.Array, bits: int, grid: str) -> jax.Array:
    """Quantize x in [-1, 1] to the signed b-bit grid: one sign bit, b - 1 magnitude bits."""
    sign = jnp.sign(x)
    magnitude = jnp.abs(x)
    if grid == "uniform":
        return sign * _uniform_magnitude(magnitude, 2 ** (bits - 1) - 1)
    return sign * _nearest_level(magnitude, weight_log_levels(bits))


def _sum_to_shape(t: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Sum `t` over the axes that were broadcast from `shape` (float32 accumulation)."""
    t = t.astype(jnp.promote_types(t.dtype, jnp.float32))
    lead = t.ndim - len(shape)
    t = jnp.sum(t, axis=tuple(range(lead)))
    kept = tuple(i for i, size in enumerate(shape) if size == 1 and t.shape[i] != 1)
    return jnp.sum(t, axis=kept, keepdims=True).reshape(shape).astype(dtype)


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _quantize_weight(w, alpha, bits, grid):
    return _quantize_weight_fwd(w, alpha, bits, grid)[0]


def _quantize_weight_fwd(w, alpha, bits, grid):
    scale = alpha.astype(w.dtype)
    x = w / scale
    q = _signed_grid(jnp.clip(x, -1, 1), bits, grid)
    return scale * q, (x, q, alpha)


def _quantize_weight_bwd(bits, grid, residuals, g):
    x, q, alpha = residuals
    outside = jnp.abs(x) > 1
    # Straight-through for w, not zeroed outside the clip range.
    alpha_term = jnp.where(outside, jnp.sign(x), q - x)
    return g, _sum_to_shape(g * alpha_term, alpha.shape, alpha.dtype)


_quantize_weight.defvjp(_quantize_weight_fwd, _quantize_weight_bwd)


def quantize_weight(w: jax.Array, alpha: jax.Array, bits: int,
                    grid: str = "uniform") -> jax.Array:
    """Quantize a (transformed) weight to b bits with learned clip `alpha`.

    Returns `alpha * q` with q on the signed grid of `grid` (see the module docstring).
    Gradients follow the reference: dL/dw = g everywhere (straight-through, not zeroed
    outside the clip), dL/dalpha = sum(g * (sign(x) if |x| > 1 else q - x)).
    """
    bits = check_bits(bits)
    check_choice(grid, GRIDS, "grid")
    return _quantize_weight(w, jnp.asarray(alpha), bits, grid)


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


def _lower_bound(lower_clip: str) -> float | None:
    return {"none": None, "zero": 0.0, "signed": -1.0}[lower_clip]


def _activation_grid(x, bits, grid, lower_clip):
    """Return q for x = input / alpha, in units of alpha."""
    if lower_clip == "signed":
        return _signed_grid(jnp.clip(x, -1, 1), bits, grid)
    lower = _lower_bound(lower_clip)
    clipped = jnp.minimum(x, 1) if lower is None else jnp.clip(x, lower, 1)
    if grid == "uniform":
        # No lower clip: negative inputs land on the same step, unbounded below.
        return _uniform_magnitude(clipped, 2 ** bits - 1)
    # On the log grid a negative input keeps its sign, as the reference's power-of-two
    # quantizer rounds |x| and multiplies by sign(x).
    return jnp.sign(clipped) * _nearest_level(jnp.abs(clipped), activation_log_levels(bits))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _quantize_activation(a, alpha, bits, grid, alpha_grad, lower_clip):
    return _quantize_activation_fwd(a, alpha, bits, grid, alpha_grad, lower_clip)[0]


def _quantize_activation_fwd(a, alpha, bits, grid, alpha_grad, lower_clip):
    scale = alpha.astype(a.dtype)
    x = a / scale
    q = _activation_grid(x, bits, grid, lower_clip)
    return scale * q, (x, q, alpha)


def _quantize_activation_bwd(bits, grid, alpha_grad, lower_clip, residuals, g):
    x, q, alpha = residuals
    lower = _lower_bound(lower_clip)
    above = x > 1
    below = jnp.zeros_like(above) if lower is None else x < lower
    clipped = above | below
    da = jnp.where(clipped, jnp.zeros_like(g), g)
    clip_term = jnp.where(above, 1.0, lower or 0.0).astype(g.dtype)
    inside_term = (q - x) if alpha_grad == "lsq" else jnp.zeros_like(x)
    # The same products as g * where(clipped, clip_term, inside_term), in a form that
    # XLA:CPU reduces faster: a ResNet-20 W4A4 step (batch 128) took about 6% less time.
    alpha_partials = jnp.where(clipped, g * clip_term, g * inside_term)
    return da, _sum_to_shape(alpha_partials, alpha.shape, alpha.dtype)


_quantize_activation.defvjp(_quantize_activation_fwd, _quantize_activation_bwd)


def quantize_activation(x: jax.Array, alpha: jax.Array, bits: int, grid: str = "uniform",
                        alpha_grad: str = "lsq", lower_clip: str = "none") -> jax.Array:
    """Quantize an activation to b bits with learned clip `alpha`.

    Args:
      x: the activation (input of a quantized conv).
      alpha: learned clip, broadcastable to `x` (a scalar per layer in the models).
      bits: bit width, 2 to 8.
      grid: "uniform" or "log".
      alpha_grad: "lsq": dL/dalpha = sum(g * (1 if x > 1 else q - x)), the CIFAR-10 rule;
        "pact": dL/dalpha = sum(g * 1[x > 1]), the ImageNet rule.
      lower_clip: "none" (reference: only the upper clip, so negative inputs are not
        bounded), "zero" (clip to [0, alpha], for post-ReLU inputs) or "signed" (a
        signed b-bit grid on [-alpha, alpha]). Below a lower clip, dL/dx is zero and the
        alpha term is the clip value (0 or -1).

    Returns:
      `alpha * q` in the dtype of `x`. dL/dx = g where x / alpha <= 1 (and above the
      lower clip), else 0.
    """
    bits = check_bits(bits)
    check_choice(grid, GRIDS, "grid")
    check_choice(alpha_grad, ALPHA_GRADS, "alpha_grad")
    check_choice(lower_clip, LOWER_CLIPS, "lower_clip")
    return _quantize_activation(x, jnp.asarray(alpha), bits, grid, alpha_grad, lower_clip)


# ---------------------------------------------------------------------------
# 8-bit first and last layers
# ---------------------------------------------------------------------------


def _ieee_divide(x: jax.Array, divisor) -> jax.Array:
    """Return x / divisor rounded as IEEE division, as PyTorch computes it.

    XLA rewrites a division by a broadcast scalar into a multiplication by its
    reciprocal, which can differ by one ulp. One ulp moves a value that sits exactly
    on a rounding tie, so the 8-bit codes and the released checkpoint's logits depend
    on it. The barrier hides the broadcast divisor from that rewrite.
    """
    divisor = jnp.broadcast_to(jnp.asarray(divisor, x.dtype), x.shape)
    return x / jax.lax.optimization_barrier(divisor)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _quantize_int8(w, strict):
    # The reference's order of operations: ((w / m) * 127).round() / 127 * m.
    if strict:
        scale = jax.lax.stop_gradient(jnp.max(jnp.abs(w)))
        codes = jnp.clip(jnp.round(_ieee_divide(w, scale) * INT8_LEVELS),
                         -INT8_LEVELS, INT8_LEVELS)
    else:
        # The reference scales by the signed max, so codes can fall below -127.
        scale = jax.lax.stop_gradient(jnp.max(w))
        codes = jnp.round(_ieee_divide(w, scale) * INT8_LEVELS)
    return _ieee_divide(codes, INT8_LEVELS) * scale


_quantize_int8.defvjp(
    lambda w, strict: (_quantize_int8(w, strict), None),
    lambda strict, _, g: (g,),
)


def quantize_int8(w: jax.Array, strict: bool = False) -> jax.Array:
    """Quantize a first-conv or last-dense weight to 8 bits, straight-through gradient.

    Reference numerics (strict=False): scale m = max(w), the signed max, and
    `round(w / m * 127) / 127 * m` with no clipping, each step rounded as in PyTorch. Strict: m = max(|w|) and codes
    clipped to [-127, 127].
    """
    return _quantize_int8(w, bool(strict))
