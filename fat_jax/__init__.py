"""fat-jax: FAT (Frequency-Aware Transformation) quantization-aware training in JAX."""

from fat_jax.layers import FATConv, FloatConv, Int8Conv, Int8Dense, UniformQuantConv, layer_stats
from fat_jax.quant_config import QuantConfig
from fat_jax.quantizers import quantize_activation, quantize_int8, quantize_weight
from fat_jax.transform import frequency_transform, standardize

__all__ = [
    "FATConv",
    "FloatConv",
    "Int8Conv",
    "Int8Dense",
    "QuantConfig",
    "UniformQuantConv",
    "frequency_transform",
    "layer_stats",
    "quantize_activation",
    "quantize_int8",
    "quantize_weight",
    "standardize",
]
