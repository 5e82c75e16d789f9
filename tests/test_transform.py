"""Tests for fat_jax.transform: standardization and the frequency-domain filter.

The expected values come from an independent float64 NumPy implementation that uses the
full complex FFT (`np.fft.fft` and `np.fft.ifft`) and explicit transposes, so it shares
no code and no rfft shortcut with fat_jax.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fat_jax import transform

# (layout, shape): conv kernels with odd and even N = Cin * kh * kw, depthwise and 1x1
# kernels, PyTorch weights and dense kernels.
CASES = [
    ("HWIO", (3, 3, 4, 8)),  # N = 36
    ("HWIO", (3, 3, 3, 5)),  # N = 27
    ("HWIO", (3, 3, 1, 6)),  # depthwise, N = 9
    ("HWIO", (1, 1, 16, 8)),  # 1x1, N = 16
    ("HWIO", (1, 1, 7, 4)),  # 1x1, N = 7
    ("HWIO", (5, 5, 2, 3)),  # N = 50
    ("HWIO", (1, 1, 1, 3)),  # N = 1
    ("OIHW", (8, 4, 3, 3)),  # N = 36
    ("OIHW", (6, 1, 3, 3)),  # depthwise, N = 9
    ("OIHW", (4, 7, 1, 1)),  # 1x1, N = 7
    ("IO", (10, 4)),  # N = 10
    ("IO", (9, 5)),  # N = 9
]
CASE_IDS = [f"{layout}-{'x'.join(map(str, shape))}" for layout, shape in CASES]

# Compiled once per shape, which keeps the suite fast. test_frequency_transform_jit
# checks that the eager path gives the same values.
frequency_transform_jit = jax.jit(transform.frequency_transform, static_argnums=2)
standardize_jit = jax.jit(transform.standardize)


# ---------------------------------------------------------------------------
# Independent float64 NumPy implementation
# ---------------------------------------------------------------------------


def np_standardize(w):
    w = np.asarray(w, np.float64)
    return (w - w.mean()) / w.std(ddof=1)


def np_rows(w, layout):
    """Flatten to (Cout, N) in PyTorch (Cout, Cin, kh, kw) C order."""
    w = np.asarray(w, np.float64)
    if layout == "HWIO":
        w = w.transpose(3, 2, 0, 1)
    elif layout == "IO":
        w = w.transpose(1, 0)
    return w.reshape(w.shape[0], -1)


def np_unrows(rows, shape, layout):
    if layout == "HWIO":
        kh, kw, cin, cout = shape
        return rows.reshape(cout, cin, kh, kw).transpose(2, 3, 1, 0)
    if layout == "IO":
        return rows.transpose(1, 0)
    return rows.reshape(shape)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_frequency_transform(w, t, layout):
    """Return the filtered weight and the full (Cout, N) mask."""
    rows = np_rows(w, layout)
    spectrum = np.fft.fft(rows, axis=-1)
    mask = np_sigmoid(np.asarray(t, np.float64) @ np.abs(spectrum))
    filtered = np.fft.ifft(spectrum * mask, axis=-1).real
    return np_unrows(filtered, np.shape(w), layout), mask


# ---------------------------------------------------------------------------
# Full-FFT form in jax.numpy, for comparing values and gradients with the rfft form
# ---------------------------------------------------------------------------


def jnp_full_fft_transform(kernel, t):
    """Filter an HWIO kernel with the full complex FFT and return (filtered, full mask)."""
    kh, kw, cin, cout = kernel.shape
    rows = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(cout, -1)
    spectrum = jnp.fft.fft(rows.astype(jnp.complex64), axis=-1)
    score = jnp.matmul(t, jnp.abs(spectrum), precision=jax.lax.Precision.HIGHEST)
    mask = jax.nn.sigmoid(score)
    filtered = jnp.real(jnp.fft.ifft(spectrum * mask, axis=-1))
    return jnp.transpose(filtered.reshape(cout, cin, kh, kw), (2, 3, 1, 0)), mask


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def cout_of(shape, layout):
    return shape[0] if layout == "OIHW" else shape[-1]


def random_weight(rng, shape):
    """Draw a standardized float32 weight, as the FAT layers pass to the filter."""
    return np_standardize(rng.normal(size=shape)).astype(np.float32)


def random_transform(rng, cout, n, scale=3.0):
    """Draw a random T whose scores are of order `scale`, so masks spread over (0, 1)."""
    t = rng.normal(size=(cout, cout)) * scale / (np.sqrt(cout) * np.sqrt(n))
    return t.astype(np.float32)


# ---------------------------------------------------------------------------
# standardize and center
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 3, 4, 8), (1, 1, 16, 8), (3, 3, 1, 6), (10, 4)])
def test_standardize_matches_numpy(shape):
    w = (np.random.default_rng(0).normal(size=shape) * 0.3 + 0.1).astype(np.float32)
    expected = np_standardize(w)

    actual = np.asarray(standardize_jit(jnp.asarray(w)))

    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_standardize_statistics():
    w = np.random.default_rng(1).normal(3.0, 0.5, size=(3, 3, 8, 16)).astype(np.float32)

    out = np.asarray(standardize_jit(jnp.asarray(w)), np.float64)

    assert abs(out.mean()) < 1e-5
    assert out.std(ddof=1) == pytest.approx(1.0, abs=1e-5)


def test_standardize_grad_is_g_over_std():
    rng = np.random.default_rng(2)
    w = rng.normal(0.2, 0.7, size=(3, 3, 4, 8)).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)

    grad = jax.jit(jax.grad(lambda v: jnp.sum(g * transform.standardize(v))))(jnp.asarray(w))

    expected = g / np.asarray(w, np.float64).std(ddof=1)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-6)


def test_center_matches_numpy():
    w = np.random.default_rng(3).normal(0.5, 1.0, size=(3, 3, 2, 4)).astype(np.float32)

    actual = np.asarray(transform.center(jnp.asarray(w)))

    np.testing.assert_allclose(actual, w - np.asarray(w, np.float64).mean(), atol=1e-6)


def test_center_grad_is_identity():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)

    grad = jax.grad(lambda v: jnp.sum(g * transform.center(v)))(jnp.asarray(w))

    np.testing.assert_array_equal(np.asarray(grad), g)


# ---------------------------------------------------------------------------
# Row layout
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=1)
def rows_round_trip(w, layout):
    rows = transform.to_rows(w, layout)
    return rows, transform.from_rows(rows, w.shape, layout)


@pytest.mark.parametrize(("layout", "shape"), CASES, ids=CASE_IDS)
def test_rows_pytorch_order(layout, shape):
    w = np.random.default_rng(5).normal(size=shape).astype(np.float32)

    rows, back = rows_round_trip(jnp.asarray(w), layout)

    np.testing.assert_array_equal(np.asarray(rows), np_rows(w, layout).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(back), w)


# ---------------------------------------------------------------------------
# frequency_transform against the NumPy full-FFT implementation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "shape"), CASES, ids=CASE_IDS)
def test_frequency_transform_matches_numpy(layout, shape):
    rng = np.random.default_rng(7)
    w = random_weight(rng, shape)
    cout = cout_of(shape, layout)
    n = w.size // cout
    t = random_transform(rng, cout, n)
    expected, expected_full_mask = np_frequency_transform(w, t, layout)

    filtered, mask = frequency_transform_jit(jnp.asarray(w), jnp.asarray(t), layout)

    assert filtered.shape == shape
    assert mask.shape == (cout, n // 2 + 1)
    np.testing.assert_allclose(np.asarray(filtered), expected, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(mask), expected_full_mask[:, : n // 2 + 1], atol=1e-5)


def test_random_transform_filters_weight():
    # Guards the comparisons above against a vacuous pass: the random masks filter.
    rng = np.random.default_rng(9)
    w = random_weight(rng, (3, 3, 4, 8))
    t = random_transform(rng, 8, 36)

    filtered, mask = frequency_transform_jit(jnp.asarray(w), jnp.asarray(t), "HWIO")

    assert float(np.min(mask)) < 0.4
    assert float(np.max(mask)) > 0.6
    assert np.max(np.abs(np.asarray(filtered) - w)) > 0.1


# ---------------------------------------------------------------------------
# rfft form against the full-FFT form: values and gradients
# ---------------------------------------------------------------------------

# Even N, odd N (depthwise) and odd N (1x1).
RFFT_SHAPES = [(3, 3, 4, 8), (3, 3, 1, 6), (1, 1, 7, 4)]


def rfft_and_full_fft(shape, seed):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(random_weight(rng, shape))
    n = int(np.prod(shape[:3]))
    t = jnp.asarray(random_transform(rng, shape[3], n))
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    return w, t, g


def rfft_form(kernel, matrix):
    return transform.frequency_transform(kernel, matrix, "HWIO")


@functools.partial(jax.jit, static_argnums=0)
def values_and_grads(form, kernel, matrix, g):
    """Return the filtered kernel, the mask and the gradients of sum(g * filtered)."""
    filtered, vjp, mask = jax.vjp(form, kernel, matrix, has_aux=True)
    return filtered, mask, vjp(g)


@pytest.mark.parametrize("shape", RFFT_SHAPES)
def test_rfft_matches_full_fft(shape):
    w, t, g = rfft_and_full_fft(shape, 10)

    filtered, mask, (dw, dt) = values_and_grads(rfft_form, w, t, g)
    full_filtered, full_mask, (full_dw, full_dt) = values_and_grads(
        jnp_full_fft_transform, w, t, g)

    n = full_mask.shape[1]
    np.testing.assert_allclose(np.asarray(filtered), np.asarray(full_filtered), atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(mask), np.asarray(full_mask)[:, : n // 2 + 1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(dw), np.asarray(full_dw), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dt), np.asarray(full_dt), rtol=1e-4, atol=1e-4)
    assert np.max(np.abs(np.asarray(dt))) > 1e-2


@pytest.mark.parametrize("shape", RFFT_SHAPES)
def test_mask_conjugate_symmetric(shape):
    w, t, _ = rfft_and_full_fft(shape, 12)
    g = np.zeros(w.shape, np.float32)

    _, full_mask, _ = values_and_grads(jnp_full_fft_transform, w, t, g)

    full_mask = np.asarray(full_mask)
    n = full_mask.shape[1]
    mirrored = full_mask[:, (n - np.arange(1, n)) % n]
    np.testing.assert_allclose(full_mask[:, 1:], mirrored, atol=1e-6)


# ---------------------------------------------------------------------------
# Properties of the filter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 3, 4, 8), (3, 3, 1, 6), (1, 1, 16, 8), (2, 1, 3, 1)])
def test_filtered_row_norm_bounded(shape):
    # 32 random weights and transforms per shape, with score scales from 0.1 to 30.
    rng = np.random.default_rng(13)
    draws = 32
    n = int(np.prod(shape[:3]))
    w = rng.normal(size=(draws, *shape)).astype(np.float32)
    scales = rng.uniform(0.1, 30.0, size=draws)
    t = np.stack([random_transform(rng, shape[3], n, scale=s) for s in scales])

    filtered, _ = jax.jit(jax.vmap(lambda v, m: transform.frequency_transform(v, m, "HWIO")))(
        jnp.asarray(w), jnp.asarray(t))

    filtered = np.asarray(filtered)
    for i in range(draws):
        norms_in = np.linalg.norm(np_rows(w[i], "HWIO"), axis=1)
        norms_out = np.linalg.norm(np_rows(filtered[i], "HWIO"), axis=1)
        assert np.all(norms_out <= norms_in * (1 + 1e-5)), (i, norms_out - norms_in)


def test_saturated_mask_is_identity():
    rng = np.random.default_rng(14)
    w = random_weight(rng, (3, 3, 4, 8))
    t = np.full((8, 8), 1e3, np.float32)

    filtered, mask = frequency_transform_jit(jnp.asarray(w), jnp.asarray(t), "HWIO")

    np.testing.assert_array_equal(np.asarray(mask), np.ones((8, 19), np.float32))
    np.testing.assert_allclose(np.asarray(filtered), w, atol=1e-5)


def test_zero_transform_halves_weight():
    rng = np.random.default_rng(15)
    w = random_weight(rng, (3, 3, 3, 5))

    filtered, mask = frequency_transform_jit(
        jnp.asarray(w), np.zeros((5, 5), np.float32), "HWIO")

    np.testing.assert_array_equal(np.asarray(mask), np.full((5, 14), 0.5, np.float32))
    np.testing.assert_allclose(np.asarray(filtered), 0.5 * w, atol=1e-5)


@pytest.mark.parametrize("gain", [0.1, 0.5, 0.9])
def test_constant_mask_scales_weight(gain):
    # Every row is +-1 at one position, so |spectrum| = 1 in every bin and the score of
    # channel o is the sum of row o of T. T = logit(gain) / Cout makes the mask `gain`.
    rng = np.random.default_rng(16)
    cout, n = 8, 36
    rows = np.zeros((cout, n), np.float32)
    rows[np.arange(cout), rng.integers(0, n, cout)] = rng.choice([-1.0, 1.0], cout)
    w = rows.reshape(cout, 4, 3, 3)
    t = np.full((cout, cout), np.log(gain / (1 - gain)) / cout, np.float32)

    filtered, mask = frequency_transform_jit(jnp.asarray(w), jnp.asarray(t), "OIHW")

    np.testing.assert_allclose(np.asarray(mask), np.full((cout, n // 2 + 1), gain), atol=1e-6)
    np.testing.assert_allclose(np.asarray(filtered), gain * w, atol=1e-6)


def test_initial_mask_near_one():
    w = random_weight(np.random.default_rng(17), (3, 3, 64, 64))
    t = np.full((64, 64), 1.0 / 64, np.float32)

    _, mask = frequency_transform_jit(jnp.asarray(w), t, "HWIO")

    assert float(np.min(mask)) >= 1 - 1e-4
    assert float(np.max(mask)) <= 1.0


def test_initial_mask_shared_by_rows():
    w = random_weight(np.random.default_rng(18), (1, 1, 16, 8))
    t = np.full((8, 8), 1.0 / 8, np.float32)

    _, mask = frequency_transform_jit(jnp.asarray(w), t, "HWIO")

    mask = np.asarray(mask)
    np.testing.assert_allclose(mask, np.broadcast_to(mask[:1], mask.shape), rtol=1e-6)
    assert float(np.min(mask)) < 0.99


# ---------------------------------------------------------------------------
# jit, grad, vmap and dtypes
# ---------------------------------------------------------------------------


def test_standardize_jit_and_vmap():
    w = np.random.default_rng(19).normal(size=(4, 3, 3, 2, 5)).astype(np.float32)

    single = np.stack([standardize_jit(v) for v in w])
    batched = jax.jit(jax.vmap(transform.standardize))(w)

    np.testing.assert_allclose(np.asarray(batched), np.asarray(single), rtol=1e-6, atol=1e-6)


def test_center_jit_and_vmap():
    w = np.random.default_rng(20).normal(size=(4, 3, 3, 2, 5)).astype(np.float32)

    eager = np.stack([transform.center(jnp.asarray(v)) for v in w])
    jitted = jax.jit(jax.vmap(transform.center))(w)

    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=1e-6)


def test_frequency_transform_jit():
    rng = np.random.default_rng(21)
    w = jnp.asarray(random_weight(rng, (3, 3, 4, 8)))
    t = jnp.asarray(random_transform(rng, 8, 36))

    eager, eager_mask = transform.frequency_transform(w, t, "HWIO")
    jitted, jitted_mask = jax.jit(transform.frequency_transform, static_argnums=2)(
        w, t, "HWIO")

    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
    np.testing.assert_allclose(np.asarray(jitted_mask), np.asarray(eager_mask), atol=1e-6)


def test_frequency_transform_vmap():
    rng = np.random.default_rng(22)
    w = rng.normal(size=(3, 3, 3, 3, 5)).astype(np.float32)
    t = jnp.asarray(random_transform(rng, 5, 27))

    batched, _ = jax.vmap(lambda v: transform.frequency_transform(v, t, "HWIO"))(jnp.asarray(w))

    batched = np.asarray(batched)
    for i in range(w.shape[0]):
        single, _ = frequency_transform_jit(jnp.asarray(w[i]), t, "HWIO")
        np.testing.assert_allclose(batched[i], np.asarray(single), atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_standardize_keeps_dtype(dtype):
    w = jnp.asarray(np.random.default_rng(24).normal(size=(3, 3, 2, 4)), dtype)

    assert transform.standardize(w).dtype == dtype
    assert transform.center(w).dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_frequency_transform_keeps_dtype(dtype):
    rng = np.random.default_rng(25)
    w32 = random_weight(rng, (3, 3, 2, 4))
    t = jnp.asarray(random_transform(rng, 4, 18))

    filtered, mask = frequency_transform_jit(jnp.asarray(w32, dtype), t, "HWIO")
    expected, _ = np_frequency_transform(np.asarray(jnp.asarray(w32, dtype), np.float64),
                                         t, "HWIO")

    assert filtered.dtype == dtype
    assert mask.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(filtered, np.float64), expected, atol=2e-2)


def test_frequency_transform_bfloat16_grad_dtype():
    rng = np.random.default_rng(26)
    w = jnp.asarray(random_weight(rng, (3, 3, 2, 4)), jnp.bfloat16)
    t = jnp.asarray(random_transform(rng, 4, 18))

    def loss(kernel, matrix):
        filtered, _ = transform.frequency_transform(kernel, matrix, "HWIO")
        return jnp.sum(filtered.astype(jnp.float32))

    dw, dt = jax.jit(jax.grad(loss, argnums=(0, 1)))(w, t)

    assert dw.dtype == jnp.bfloat16
    assert dt.dtype == jnp.float32


# ---------------------------------------------------------------------------
# Invalid input
# ---------------------------------------------------------------------------


def test_unknown_layout_rejected():
    w = np.zeros((8, 4, 3, 3), np.float32)

    with pytest.raises(ValueError, match=r"layout 'NCHW'.*HWIO, OIHW, IO"):
        transform.frequency_transform(w, np.zeros((8, 8), np.float32), "NCHW")


@pytest.mark.parametrize(("layout", "shape"), [
    ("HWIO", (9, 8)),
    ("OIHW", (8, 4, 9)),
    ("IO", (3, 3, 4, 8)),
    ("HWIO", (1, 3, 3, 4, 8)),
])
def test_wrong_rank_rejected(layout, shape):
    w = np.zeros(shape, np.float32)
    rank = 2 if layout == "IO" else 4

    with pytest.raises(ValueError, match=rf"shape \({shape[0]}, .*'{layout}'.*rank {rank}"):
        transform.frequency_transform(w, np.zeros((8, 8), np.float32), layout)


@pytest.mark.parametrize("t_shape", [(8, 4), (4, 4), (8,), (8, 8, 1)])
def test_wrong_transform_shape_rejected(t_shape):
    w = np.zeros((3, 3, 4, 8), np.float32)
    shape_text = str(t_shape).replace("(", r"\(").replace(")", r"\)")

    with pytest.raises(ValueError, match=rf"transform shape {shape_text}.*expected \(8, 8\)"):
        transform.frequency_transform(w, np.zeros(t_shape, np.float32), "HWIO")
