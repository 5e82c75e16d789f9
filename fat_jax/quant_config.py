"""The quantization settings shared by every quantized layer of a model."""

from __future__ import annotations

import dataclasses
import math
import numbers

from fat_jax import quantizers

FLOAT_BITS = 32
"""Bit width that selects the full-precision model (plain convs in the blocks)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Quantization settings of a model, validated on construction."""

    # Bit width of the FAT and uniform conv weights: 2 to 8, or 32 for float.
    weight_bits: int = 4
    # Bit width of the activations entering those convs: 2 to 8, or 32 for float.
    act_bits: int = 4
    # Quantization grid of weights and activations: "uniform" or "log".
    grid: str = "uniform"
    # Activation alpha gradient: "lsq" (CIFAR-10 recipe) or "pact" (ImageNet recipe).
    act_alpha_grad: str = "lsq"
    # Strict b-bit numerics: activation lower clip (zero after ReLU, signed grid where
    # the input can be negative) and abs-max 8-bit layers with clipped codes. False
    # reproduces the reference implementation.
    strict: bool = False
    # Whether FAT convs filter the standardized weight by the learned frequency mask
    # (the FAT method). False drops the filter and its `transform` parameter, leaving
    # standardize and the weight quantizer: the same quantizers without the transform,
    # as a baseline for ablations and benchmarks.
    use_transform: bool = True
    # Initial weight clip, in units of the standardized weight.
    weight_alpha_init: float = 3.0
    # Initial activation clip of FAT convs (5.0 on CIFAR-10, 8.0 on ImageNet).
    act_alpha_init: float = 5.0
    # Initial activation clip of uniform (non-FAT) quantized convs.
    uniform_act_alpha_init: float = 5.0

    def __post_init__(self):
        full = (self.weight_bits, self.act_bits) == (FLOAT_BITS, FLOAT_BITS)
        if not full:
            if FLOAT_BITS in (self.weight_bits, self.act_bits):
                raise ValueError(
                    f"Invalid bit widths weight_bits={self.weight_bits!r},"
                    f" act_bits={self.act_bits!r}: use {FLOAT_BITS} for both (full"
                    " precision) or 2 to 8 for both.")
            quantizers.check_bits(self.weight_bits, "weight_bits")
            quantizers.check_bits(self.act_bits, "act_bits")
        quantizers.check_choice(self.grid, quantizers.GRIDS, "grid")
        quantizers.check_choice(self.act_alpha_grad, quantizers.ALPHA_GRADS, "act_alpha_grad")
        for name in ("strict", "use_transform"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"Invalid {name}={value!r}: expected True or False.")
        for name in ("weight_alpha_init", "act_alpha_init", "uniform_act_alpha_init"):
            value = getattr(self, name)
            valid = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                     and math.isfinite(value) and value > 0)
            if not valid:
                raise ValueError(
                    f"Invalid {name}={value!r}: expected a positive finite number.")

    @property
    def full_precision(self) -> bool:
        """Whether the block convs are plain float convs (bits=32)."""
        return self.weight_bits == FLOAT_BITS

    def lower_clip(self, signed_input: bool) -> str:
        """Return the activation lower clip for an input that may be negative or not."""
        if not self.strict:
            return "none"
        return "signed" if signed_input else "zero"

    @classmethod
    def from_bits(cls, bits: int, **kwargs) -> "QuantConfig":
        """Build a WbAb config (the same bit width for weights and activations)."""
        return cls(weight_bits=bits, act_bits=bits, **kwargs)
