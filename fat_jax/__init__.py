"""fat-jax: FAT (Frequency-Aware Transformation) quantization-aware training in JAX."""

from fat_jax import models
from fat_jax.layers import FATConv, FloatConv, Int8Conv, Int8Dense, UniformQuantConv, layer_stats
from fat_jax.quant_config import QuantConfig
from fat_jax.quantizers import quantize_activation, quantize_int8, quantize_weight
from fat_jax.torch_weights import (
    load_reference_checkpoint,
    load_torchvision_weights,
    read_state_dict,
    save_state_dict,
    state_dict_to_variables,
    variables_to_state_dict,
)
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
    "load_reference_checkpoint",
    "load_torchvision_weights",
    "models",
    "quantize_activation",
    "quantize_int8",
    "quantize_weight",
    "read_state_dict",
    "save_state_dict",
    "standardize",
    "state_dict_to_variables",
    "variables_to_state_dict",
]
