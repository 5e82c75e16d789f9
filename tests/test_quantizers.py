"""Tests for fat_jax.quantizers: forward grids, gradient rules, level sets and errors.

The expected values come from independent float64 NumPy quantizers written from the FAT
method: weights `alpha * sign(xc) * round(|xc| * n) / n` with xc = clip(w / alpha, -1, 1)
and n = 2^(b-1) - 1, activations `alpha * round(min(x, 1) * m) / m` with m = 2^b - 1, and
log grids {0} U {2^-j} searched by linear distance. Random inputs are moved away from
rounding ties first, so float32 and float64 agree on every rounding decision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fat_jax import quantizers

ALL_BITS = [2, 3, 4, 5, 6, 7, 8]
GRIDS = ["uniform", "log"]
LOWER_CLIPS = ["none", "zero", "signed"]
# A plain matrix, a depthwise kernel (kh, kw, 1, Cout) and a 1x1 kernel.
SHAPES = [(48, 33), (3, 3, 1, 16), (1, 1, 32, 16)]
# The log-grid tests share one shape: each new shape compiles the level search again,
# which takes up to a second for the 8-bit grids.
SHAPE = SHAPES[0]
SIZE = int(np.prod(SHAPE))


# ---------------------------------------------------------------------------
# Independent float64 NumPy quantizers
# ---------------------------------------------------------------------------


def np_weight_levels(bits):
    return np.array([0.0] + [2.0 ** -j for j in range(2 ** (bits - 1) - 1)])


def np_activation_levels(bits):
    return np.array([0.0] + [2.0 ** -j for j in range(2 ** bits - 1)])


def np_nearest_level(magnitude, levels):
    """Return the nearest level by linear distance. A tie goes to the lower level."""
    levels = np.sort(levels)
    index = np.argmin(np.abs(magnitude[..., None] - levels), axis=-1)
    return levels[index]


def np_signed_q(x, bits, grid):
    """Return q of the weight quantizer, in units of alpha."""
    xc = np.clip(x, -1.0, 1.0)
    sign, magnitude = np.sign(xc), np.abs(xc)
    if grid == "uniform":
        n = 2 ** (bits - 1) - 1
        return sign * np.round(magnitude * n) / n
    return sign * np_nearest_level(magnitude, np_weight_levels(bits))


def np_activation_q(x, bits, grid, lower_clip):
    """Return q of the activation quantizer, in units of alpha."""
    if lower_clip == "signed":
        return np_signed_q(x, bits, grid)
    xc = np.minimum(x, 1.0) if lower_clip == "none" else np.clip(x, 0.0, 1.0)
    if grid == "uniform":
        m = 2 ** bits - 1
        return np.round(xc * m) / m
    # A negative input (no lower clip) keeps its sign on the log grid.
    return np.sign(xc) * np_nearest_level(np.abs(xc), np_activation_levels(bits))


def np_weight_grads(g, x, q):
    """dL/dw and dL/dalpha of the weight quantizer."""
    outside = (np.abs(x) > 1).astype(np.float64)
    alpha_term = np.sign(x) * outside + (q - x) * (1 - outside)
    return g, np.sum(g * alpha_term)


def np_activation_grads(g, x, q, alpha_grad, lower_clip):
    """dL/da and dL/dalpha of the activation quantizer."""
    above = (x > 1).astype(np.float64)
    if lower_clip == "none":
        below, clip_value = np.zeros_like(x), 0.0
    elif lower_clip == "zero":
        below, clip_value = (x < 0).astype(np.float64), 0.0
    else:
        below, clip_value = (x < -1).astype(np.float64), -1.0
    inside = (1 - above) * (1 - below)
    alpha_term = above + clip_value * below
    if alpha_grad == "lsq":
        alpha_term = alpha_term + (q - x) * inside
    return g * inside, np.sum(g * alpha_term)


def np_quantize_int8(w, strict):
    w = np.asarray(w, np.float64)
    if strict:
        scale = np.max(np.abs(w))
        codes = np.clip(np.round(127 * w / scale), -127, 127)
    else:
        scale = np.max(w)
        codes = np.round(127 * w / scale)
    return scale * codes / 127


# ---------------------------------------------------------------------------
# Random inputs away from rounding ties
# ---------------------------------------------------------------------------


def away_from_ties(x, q_of, rel=1e-4):
    """Move every x whose q or clip indicator changes within a relative distance rel.

    float32 computes x = input / alpha with a relative error near 6e-8, so after this
    float32 and float64 make the same rounding and clipping decisions.
    """
    x = np.array(x, np.float64)
    for _ in range(20):
        near_tie = q_of(x * (1 - rel)) != q_of(x * (1 + rel))
        near_clip = np.abs(np.abs(x) - 1) < rel
        unstable = near_tie | near_clip
        if not unstable.any():
            return x
        x = np.where(unstable, x * (1 + 3 * rel), x)
    raise AssertionError("could not move the inputs away from rounding ties")


def on_shape(values):
    """Return `values` at the start of a zero float32 array of SHAPE.

    Small hand-picked inputs are padded to SHAPE so they reuse the operations that
    JAX has already compiled for that shape.
    """
    padded = np.zeros(SIZE, np.float32)
    padded[: len(values)] = values
    return jnp.asarray(padded.reshape(SHAPE))


def head(out, count):
    """Return the first `count` values of an output of SHAPE, in float64."""
    return np.asarray(out, np.float64).ravel()[:count]


def weight_case(seed, shape, bits, grid, alpha):
    rng = np.random.default_rng(seed)
    x = away_from_ties(rng.normal(0, 0.7, shape), lambda v: np_signed_q(v, bits, grid))
    w = (x * alpha).astype(np.float32)
    x64 = w.astype(np.float64) / alpha
    g = rng.normal(size=shape).astype(np.float32)
    return w, x64, np_signed_q(x64, bits, grid), g


def activation_case(seed, shape, bits, grid, lower_clip, alpha):
    rng = np.random.default_rng(seed)
    # Inputs from -1.5 to 1.5 alpha: below every lower clip, inside, and above 1.
    x = away_from_ties(rng.uniform(-1.5, 1.5, shape),
                       lambda v: np_activation_q(v, bits, grid, lower_clip))
    a = (x * alpha).astype(np.float32)
    x64 = a.astype(np.float64) / alpha
    g = rng.normal(size=shape).astype(np.float32)
    return a, x64, np_activation_q(x64, bits, grid, lower_clip), g


def int8_case(seed, shape):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.2, shape)
    for scale in (np.max(w), np.max(np.abs(w))):
        codes = 127 * w / scale
        near_tie = np.abs(np.abs(codes - np.floor(codes)) - 0.5) < 1e-3
        w = np.where(near_tie, w + 3e-3 * scale / 127, w)
    return w.astype(np.float32)


# ---------------------------------------------------------------------------
# Weight quantizer against NumPy
# ---------------------------------------------------------------------------

# Uniform grids cycle through the shapes. Log grids use SHAPE, plus one depthwise case.
WEIGHT_CASES = (
    [(b, "uniform", SHAPES[i % 3]) for i, b in enumerate(ALL_BITS)]
    + [(b, "log", SHAPE) for b in ALL_BITS]
    + [(4, "log", SHAPES[1])]
)


@pytest.mark.parametrize(("bits", "grid", "shape"), WEIGHT_CASES)
def test_weight_matches_numpy(bits, grid, shape):
    alpha = 2.7
    w, x, q, _ = weight_case(bits, shape, bits, grid, alpha)

    out = quantizers.quantize_weight(jnp.asarray(w), alpha, bits, grid)

    np.testing.assert_allclose(np.asarray(out), alpha * q, rtol=1e-6, atol=1e-6)
    assert np.mean(np.abs(x) > 1) > 0.05


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_grads_match_rules(bits, grid):
    alpha = 1.9
    w, x, q, g = weight_case(10 + bits, SHAPE, bits, grid, alpha)
    expected_dw, expected_dalpha = np_weight_grads(g, x, q)

    def loss(v, clip):
        return jnp.sum(g * quantizers.quantize_weight(v, clip, bits, grid))

    dw, dalpha = jax.grad(loss, argnums=(0, 1))(jnp.asarray(w), jnp.float32(alpha))

    np.testing.assert_array_equal(np.asarray(dw), expected_dw)
    np.testing.assert_allclose(float(dalpha), expected_dalpha, rtol=1e-4, atol=1e-3)


def test_weight_grad_not_zeroed_outside_clip():
    w = on_shape([-9.0, -3.5, 0.2, 3.5, 9.0])

    dw = jax.grad(lambda v: jnp.sum(quantizers.quantize_weight(v, 3.0, 4)))(w)

    np.testing.assert_array_equal(head(dw, 5), np.ones(5))


def test_weight_per_channel_alpha_grad():
    alpha = np.linspace(1.5, 3.0, SHAPE[-1]).astype(np.float32)
    rng = np.random.default_rng(20)
    x = away_from_ties(rng.normal(0, 0.7, SHAPE), lambda v: np_signed_q(v, 4, "uniform"))
    w = (x * alpha).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)
    x64 = w.astype(np.float64) / alpha
    q = np_signed_q(x64, 4, "uniform")

    dalpha = jax.jit(jax.grad(lambda a: jnp.sum(g * quantizers.quantize_weight(w, a, 4))))(
        jnp.asarray(alpha))
    dalpha = np.asarray(dalpha)

    assert dalpha.shape == alpha.shape
    for c in range(len(alpha)):
        _, expected = np_weight_grads(g[..., c], x64[..., c], q[..., c])
        np.testing.assert_allclose(float(dalpha[c]), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Activation quantizer against NumPy
# ---------------------------------------------------------------------------

ACTIVATION_CASES = (
    [(b, "uniform", clip, SHAPES[i % 3])
     for i, (b, clip) in enumerate((b, clip) for clip in LOWER_CLIPS for b in ALL_BITS)]
    + [(b, "log", clip, SHAPE) for clip in LOWER_CLIPS for b in ALL_BITS]
)


@pytest.mark.parametrize(("bits", "grid", "lower_clip", "shape"), ACTIVATION_CASES)
def test_activation_matches_numpy(bits, grid, lower_clip, shape):
    alpha = 4.3
    a, _, q, _ = activation_case(bits, shape, bits, grid, lower_clip, alpha)

    out = quantizers.quantize_activation(jnp.asarray(a), alpha, bits, grid,
                                         lower_clip=lower_clip)

    np.testing.assert_allclose(np.asarray(out), alpha * q, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lower_clip", LOWER_CLIPS)
@pytest.mark.parametrize("alpha_grad", ["lsq", "pact"])
@pytest.mark.parametrize(("bits", "grid"), [(2, "uniform"), (4, "uniform"), (3, "log")])
def test_activation_grads_match_rules(bits, grid, alpha_grad, lower_clip):
    alpha = 3.1
    a, x, q, g = activation_case(30 + bits, SHAPE, bits, grid, lower_clip, alpha)
    expected_da, expected_dalpha = np_activation_grads(g, x, q, alpha_grad, lower_clip)

    def loss(v, clip):
        out = quantizers.quantize_activation(v, clip, bits, grid, alpha_grad, lower_clip)
        return jnp.sum(g * out)

    da, dalpha = jax.grad(loss, argnums=(0, 1))(jnp.asarray(a), jnp.float32(alpha))

    np.testing.assert_array_equal(np.asarray(da), expected_da.astype(np.float32))
    np.testing.assert_allclose(float(dalpha), expected_dalpha, rtol=1e-4, atol=1e-3)


def test_activation_no_lower_clip_unbounded():
    # The reference grid continues below zero in steps of alpha / (2^b - 1).
    a = on_shape([-10.0, -2.0, -0.3])

    out = quantizers.quantize_activation(a, 1.0, 2)

    np.testing.assert_allclose(head(out, 3), [-10.0, -2.0, -1 / 3], rtol=1e-6)


def test_activation_zero_clip_bounds():
    a = on_shape([-10.0, -0.3, 0.5, 7.0])

    out = quantizers.quantize_activation(a, 2.0, 2, lower_clip="zero")

    np.testing.assert_allclose(head(out, 4), [0.0, 0.0, 2 / 3, 2.0], rtol=1e-6)


def test_activation_signed_clip_bounds():
    a = on_shape([-10.0, -0.9, 0.5, 7.0])

    out = quantizers.quantize_activation(a, 2.0, 3, lower_clip="signed")

    np.testing.assert_allclose(head(out, 4), [-2.0, -2 / 3, 2 / 3, 2.0], rtol=1e-6)


# ---------------------------------------------------------------------------
# 8-bit quantizer against NumPy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("shape", [SHAPE, (3, 3, 3, 16)])
def test_int8_matches_numpy(shape, strict):
    w = int8_case(40, shape)

    out = quantizers.quantize_int8(jnp.asarray(w), strict)

    np.testing.assert_allclose(np.asarray(out), np_quantize_int8(w, strict), rtol=1e-6,
                               atol=1e-7)


def test_int8_codes_below_minus_127():
    w = on_shape([-1.055, -0.5, 0.25, 1.0])

    codes = head(quantizers.quantize_int8(w), 4) * 127

    np.testing.assert_allclose(codes, [-134.0, -64.0, 32.0, 127.0], atol=1e-4)


def test_int8_strict_uses_abs_max():
    w = on_shape([-1.055, -0.5, 0.25, 1.0])

    codes = head(quantizers.quantize_int8(w, strict=True), 4) * 127 / 1.055

    np.testing.assert_allclose(codes, [-127.0, -60.0, 30.0, 120.0], atol=1e-4)


@pytest.mark.parametrize("strict", [False, True])
def test_int8_grad_straight_through(strict):
    rng = np.random.default_rng(41)
    w = jnp.asarray(int8_case(41, SHAPE))
    g = jnp.asarray(rng.normal(size=w.shape), jnp.float32)

    dw = jax.grad(lambda v: jnp.sum(g * quantizers.quantize_int8(v, strict)))(w)

    np.testing.assert_array_equal(np.asarray(dw), np.asarray(g))


# ---------------------------------------------------------------------------
# Level sets and rounding ties
# ---------------------------------------------------------------------------


def distinct(values):
    return np.unique(np.asarray(values, np.float64))


def sweep_input(low, high, extra, alpha):
    """Return a float32 input of SHAPE: an even sweep of [low, high], then `extra`."""
    sweep = np.linspace(low, high, SIZE - len(extra))
    return jnp.asarray(np.concatenate([sweep, extra]).reshape(SHAPE) * alpha, jnp.float32)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_uniform_weight_levels(bits):
    alpha = 2.0
    n = 2 ** (bits - 1) - 1
    w = sweep_input(-1.5, 1.5, [], alpha)

    levels = distinct(quantizers.quantize_weight(w, alpha, bits)) / alpha

    assert len(levels) <= 2 ** bits - 1
    np.testing.assert_allclose(levels, np.arange(-n, n + 1) / n, atol=1e-6)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_uniform_activation_levels(bits):
    alpha = 2.0
    m = 2 ** bits - 1
    a = sweep_input(0.0, 1.5, [], alpha)

    levels = distinct(quantizers.quantize_activation(a, alpha, bits)) / alpha

    assert len(levels) <= 2 ** bits
    np.testing.assert_allclose(levels, np.arange(m + 1) / m, atol=1e-6)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_log_weight_levels(bits):
    # {0} U {2^-j : j = 0 .. 2^(b-1) - 2}, with sign: b = 3 gives 0, +-1/4, +-1/2, +-1.
    alpha = 2.0
    magnitudes = np.array([0.0] + [2.0 ** -j for j in range(2 ** (bits - 1) - 1)])
    expected = np.unique(np.concatenate([-magnitudes, magnitudes]))
    w = sweep_input(-1.5, 1.5, expected, alpha)

    levels = distinct(quantizers.quantize_weight(w, alpha, bits, "log")) / alpha

    np.testing.assert_array_equal(levels, expected)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7])
def test_log_activation_levels(bits):
    # {0} U {2^-j : j = 0 .. 2^b - 2}: b = 2 gives 0, 1/4, 1/2, 1.
    alpha = 2.0
    expected = np.sort(np.array([0.0] + [2.0 ** -j for j in range(2 ** bits - 1)]))
    a = sweep_input(0.0, 1.5, expected, alpha)

    levels = distinct(quantizers.quantize_activation(a, alpha, bits, "log")) / alpha

    np.testing.assert_array_equal(levels, expected)


def test_log_activation_8bit_underflow():
    # At b = 8 the levels 2^-j for j > 126 are below float32's smallest normal number:
    # inputs at those levels flush to zero, so 128 of the 256 levels remain.
    levels = 2.0 ** -np.arange(255, dtype=np.float64)
    a = sweep_input(0.0, 1.5, levels, 1.0)

    out = np.asarray(quantizers.quantize_activation(a, 1.0, 8, "log"), np.float64).ravel()

    at_levels = out[SIZE - 255:]
    np.testing.assert_array_equal(at_levels[:127], levels[:127])
    np.testing.assert_array_equal(at_levels[127:], np.zeros(128))
    assert len(distinct(out)) == 128


@pytest.mark.parametrize("bits", ALL_BITS)
def test_weight_log_levels_helper(bits):
    expected = np.sort(np.array([0.0] + [2.0 ** -j for j in range(2 ** (bits - 1) - 1)]))

    np.testing.assert_array_equal(quantizers.weight_log_levels(bits), expected)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_activation_log_levels_helper(bits):
    expected = np.sort(np.array([0.0] + [2.0 ** -j for j in range(2 ** bits - 1)]))

    np.testing.assert_array_equal(quantizers.activation_log_levels(bits), expected)


def test_uniform_ties_round_half_to_even():
    # b = 2 weights: 0.5 * 1 rounds to 0. b = 3 weights: 0.5 * 3 = 1.5 rounds to 2.
    w = on_shape([-0.5, 0.5])

    ternary = quantizers.quantize_weight(w, 1.0, 2)
    three_bit = quantizers.quantize_weight(w, 1.0, 3)

    np.testing.assert_array_equal(head(ternary, 2), [0.0, 0.0])
    np.testing.assert_allclose(head(three_bit, 2), [-2 / 3, 2 / 3], rtol=1e-6)


def test_uniform_activation_tie_half_to_even():
    # b = 2: m = 3, so 0.5 * 3 = 1.5 rounds to 2 and 2.5 / 3 * 3 = 2.5 rounds to 2.
    a = on_shape([0.5, 2.5 / 3])

    out = head(quantizers.quantize_activation(a, 1.0, 2), 2) * 3

    np.testing.assert_allclose(out, [2.0, 2.0], rtol=1e-6)


def test_log_ties_go_to_lower_level():
    # 0.75 is halfway between 1/2 and 1, 0.375 between 1/4 and 1/2, 0.125 between 0 and 1/4.
    w = on_shape([0.75, -0.75, 0.375, 0.125])

    out = quantizers.quantize_weight(w, 1.0, 3, "log")

    np.testing.assert_array_equal(head(out, 4), [0.5, -0.5, 0.25, 0.0])


# ---------------------------------------------------------------------------
# jit, grad, vmap and dtypes
# ---------------------------------------------------------------------------


def quantizer_calls():
    """(name, function of (input, alpha)) for each quantizer and mode."""
    return [
        ("weight-uniform", lambda v, a: quantizers.quantize_weight(v, a, 4)),
        ("weight-log", lambda v, a: quantizers.quantize_weight(v, a, 3, "log")),
        ("act-lsq", lambda v, a: quantizers.quantize_activation(v, a, 4)),
        ("act-pact-zero", lambda v, a: quantizers.quantize_activation(
            v, a, 4, alpha_grad="pact", lower_clip="zero")),
        ("act-log-signed", lambda v, a: quantizers.quantize_activation(
            v, a, 3, "log", lower_clip="signed")),
        ("int8", lambda v, a: quantizers.quantize_int8(v * a.astype(v.dtype))),
        ("int8-strict", lambda v, a: quantizers.quantize_int8(v * a.astype(v.dtype), True)),
    ]


CALLS = quantizer_calls()
CALL_IDS = [name for name, _ in CALLS]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=CALL_IDS)
def test_quantizer_jit_vmap_grad(call):
    # One compiled jit(vmap(value_and_grad)) against an eager loop over the batch.
    rng = np.random.default_rng(51)
    v = rng.normal(0, 2, (3, *SHAPE)).astype(np.float32)
    alphas = np.array([1.5, 2.5, 3.5], np.float32)
    g = rng.normal(size=v.shape).astype(np.float32)

    def loss(x, a, upstream):
        return jnp.sum(upstream * call(x, a))

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1))
    outputs = jax.jit(jax.vmap(value_and_grad))(v, alphas, g)
    values, (batched_dv, batched_da) = jax.tree_util.tree_map(np.asarray, outputs)

    for i in range(3):
        value, (dv, da) = value_and_grad(jnp.asarray(v[i]), jnp.float32(alphas[i]),
                                         jnp.asarray(g[i]))
        # The sums run over SIZE terms in an order that jit may change, hence atol.
        np.testing.assert_allclose(float(values[i]), float(value), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(np.asarray(batched_dv[i]), np.asarray(dv), rtol=1e-6)
        np.testing.assert_allclose(float(batched_da[i]), float(da), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=CALL_IDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_quantizer_keeps_dtype(call, dtype):
    v = jnp.asarray(np.random.default_rng(52).normal(0, 2, SHAPE), dtype)

    out = call(v, jnp.float32(2.5))

    assert out.dtype == dtype


@pytest.mark.parametrize("call", [c for _, c in CALLS[::2]], ids=CALL_IDS[::2])
def test_quantizer_bfloat16_grad_dtypes(call):
    v = jnp.asarray(np.random.default_rng(53).normal(0, 2, SHAPE), jnp.bfloat16)

    def loss(x, a):
        return jnp.sum(call(x, a).astype(jnp.float32))

    dv, da = jax.jit(jax.grad(loss, argnums=(0, 1)))(v, jnp.float32(2.5))

    assert dv.dtype == jnp.bfloat16
    assert da.dtype == jnp.float32


def test_bfloat16_weight_values_on_grid():
    w = jnp.asarray(np.random.default_rng(54).normal(0, 2, SHAPE), jnp.bfloat16)

    q = np.asarray(quantizers.quantize_weight(w, 2.0, 4), np.float64) / 2.0 * 7

    # The level k / 7 itself is rounded to bfloat16's 8 significant bits.
    np.testing.assert_allclose(q, np.round(q), rtol=2 ** -8, atol=1e-6)


# ---------------------------------------------------------------------------
# Invalid input
# ---------------------------------------------------------------------------

BAD_BITS = [1, 9, 0, -4, 2.5, True, False, None, "4", float("nan"), float("inf")]


@pytest.mark.parametrize("bits", BAD_BITS, ids=repr)
def test_weight_bad_bits_rejected(bits):
    with pytest.raises(ValueError, match=r"Invalid bits=.*integer from 2 to 8"):
        quantizers.quantize_weight(np.ones(3, np.float32), 1.0, bits)


@pytest.mark.parametrize("bits", BAD_BITS, ids=repr)
def test_activation_bad_bits_rejected(bits):
    with pytest.raises(ValueError, match=r"Invalid bits=.*integer from 2 to 8"):
        quantizers.quantize_activation(np.ones(3, np.float32), 1.0, bits)


@pytest.mark.parametrize("bits", [1, 9, 2.5, True])
def test_bad_bits_message_names_value(bits):
    with pytest.raises(ValueError, match=rf"bits={bits!r}:"):
        quantizers.check_bits(bits)


@pytest.mark.parametrize("bits", [1, 9, 2.5, True])
def test_log_levels_bad_bits_rejected(bits):
    with pytest.raises(ValueError, match=r"integer from 2 to 8"):
        quantizers.weight_log_levels(bits)
    with pytest.raises(ValueError, match=r"integer from 2 to 8"):
        quantizers.activation_log_levels(bits)


@pytest.mark.parametrize("bits", [2, 8, 4.0, np.int64(5)], ids=repr)
def test_check_bits_accepts_whole_numbers(bits):
    assert quantizers.check_bits(bits) == int(bits)
    assert type(quantizers.check_bits(bits)) is int


def test_weight_unknown_grid_rejected():
    with pytest.raises(ValueError, match=r"grid='linear'.*uniform, log"):
        quantizers.quantize_weight(np.ones(3, np.float32), 1.0, 4, "linear")


def test_activation_unknown_grid_rejected():
    with pytest.raises(ValueError, match=r"grid='pow2'.*uniform, log"):
        quantizers.quantize_activation(np.ones(3, np.float32), 1.0, 4, "pow2")


def test_unknown_alpha_grad_rejected():
    with pytest.raises(ValueError, match=r"alpha_grad='ste'.*lsq, pact"):
        quantizers.quantize_activation(np.ones(3, np.float32), 1.0, 4, alpha_grad="ste")


def test_unknown_lower_clip_rejected():
    with pytest.raises(ValueError, match=r"lower_clip='relu'.*none, zero, signed"):
        quantizers.quantize_activation(np.ones(3, np.float32), 1.0, 4, lower_clip="relu")
