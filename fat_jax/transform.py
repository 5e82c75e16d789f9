"""Weight standardization and the frequency-domain filter of FAT.

The filter works on a (Cout, N) matrix: each output filter flattened in (Cin, kh, kw)
order, as the PyTorch reference flattens a (Cout, Cin, kh, kw) weight. Its spectrum is
the unnormalized 1-D DFT of every row. A learned (Cout, Cout) matrix T mixes the
spectrum magnitudes across output channels into a score, and `sigmoid(score)` is the
mask, one gain per (channel, frequency bin). The filtered weight is the inverse DFT of
the masked spectrum.

Because the rows are real and T mixes channels only, the mask is conjugate-symmetric,
so the half spectrum of `rfft` carries all of it and `irfft` returns the same real rows
as the full complex inverse, at about half the cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LAYOUTS = ("HWIO", "OIHW", "IO")
"""Accepted weight layouts: Flax conv kernel, PyTorch conv weight, Flax dense kernel."""


def standardize(w: jax.Array) -> jax.Array:
    """Return `(w - mean) / std` with one mean and unbiased std over the whole tensor.

    The two statistics are constants for the gradient (stop-gradient), as in the
    reference, so `dL/dw = dL/dw_standardized / std`.
    """
    mean = jax.lax.stop_gradient(jnp.mean(w))
    std = jax.lax.stop_gradient(jnp.std(w, ddof=1))
    return (w - mean) / std


def center(w: jax.Array) -> jax.Array:
    """Return `w - mean(w)`, the mean under stop-gradient (uniform quantized convs)."""
    return w - jax.lax.stop_gradient(jnp.mean(w))


def _check_layout(w: jax.Array, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"Invalid layout {layout!r}: expected one of {', '.join(LAYOUTS)}.")
    rank = 2 if layout == "IO" else 4
    if w.ndim != rank:
        raise ValueError(
            f"Invalid weight shape {tuple(w.shape)} for layout {layout!r}: expected rank"
            f" {rank}. Pass the layout that matches the array, one of {', '.join(LAYOUTS)}.")


def to_rows(w: jax.Array, layout: str) -> jax.Array:
    """Flatten a weight into (Cout, N) rows in (Cin, kh, kw) order, whatever its layout."""
    _check_layout(w, layout)
    if layout == "HWIO":
        w = jnp.transpose(w, (3, 2, 0, 1))
    elif layout == "IO":
        w = jnp.transpose(w, (1, 0))
    return w.reshape(w.shape[0], -1)


def from_rows(rows: jax.Array, shape: tuple[int, ...], layout: str) -> jax.Array:
    """Invert `to_rows` for a weight of `shape` in `layout`."""
    if layout == "HWIO":
        kh, kw, cin, cout = shape
        return jnp.transpose(rows.reshape(cout, cin, kh, kw), (2, 3, 1, 0))
    if layout == "IO":
        return jnp.transpose(rows, (1, 0))
    return rows.reshape(shape)


def spectrum_mask(rows: jax.Array, transform: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return the half spectrum `rfft(rows)` and the mask `sigmoid(T @ |spectrum|)`.

    Both have shape (Cout, N // 2 + 1). The score is computed in float32 or wider so a
    bfloat16 weight still gets a float32-accurate mask.
    """
    spectrum = jnp.fft.rfft(rows, axis=-1)
    magnitude = jnp.abs(spectrum)
    score = jnp.matmul(
        transform.astype(magnitude.dtype), magnitude, precision=jax.lax.Precision.HIGHEST)
    return spectrum, jax.nn.sigmoid(score)


def frequency_transform(
    w: jax.Array, transform: jax.Array, layout: str
) -> tuple[jax.Array, jax.Array]:
    """Filter every output filter of `w` by its learned frequency mask.

    Args:
        w: weight in `layout`: "HWIO" (Flax conv kernel, (kh, kw, Cin/groups, Cout)),
            "OIHW" (PyTorch conv weight) or "IO" (Flax dense kernel, (Cin, Cout)).
        transform: the (Cout, Cout) matrix T; the score is `T @ |rfft(rows)|`.
        layout: the layout of `w`.

    Returns:
        `(filtered, mask)`: the filtered weight in the layout and dtype of `w`, and the
        mask of shape (Cout, N // 2 + 1) with N = Cin/groups * kh * kw.
    """
    rows = to_rows(w, layout)
    cout, n = rows.shape
    if transform.shape != (cout, cout):
        raise ValueError(
            f"Invalid transform shape {tuple(transform.shape)} for a weight with {cout} output"
            f" channels ({layout} shape {tuple(w.shape)}): expected ({cout}, {cout}).")
    # The FFT runs in float32 at least: XLA has no bfloat16 FFT.
    compute_dtype = jnp.promote_types(w.dtype, jnp.float32)
    spectrum, mask = spectrum_mask(rows.astype(compute_dtype), transform)
    filtered = jnp.fft.irfft(spectrum * mask, n=n, axis=-1)
    return from_rows(filtered.astype(w.dtype), w.shape, layout), mask
