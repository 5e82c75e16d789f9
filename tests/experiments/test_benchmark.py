"""Tests of `python -m experiments.benchmark` and its result formatting.

No test checks a measured time: the figures depend on the machine and its load.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import benchmark

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 600

TRAIN_KEYS = ("arch", "variant", "batch", "resolution", "devices", "backend", "bits",
              "step_time_s", "images_per_s", "compile_s", "first_step_s",
              "peak_memory_bytes", "memory_source", "compiles_after_first_step")
POSITIVE_KEYS = ("step_time_s", "step_time_min_s", "step_time_max_s", "images_per_s",
                 "compile_s", "first_step_s", "peak_memory_bytes")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.benchmark", *args],
                          cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_train_json_smoke():
    # The batch splits over the four simulated devices of tests/conftest.py.
    result = _run("--json", "--variants=float", "--share=false", "--batch_size=4",
                  "--image_size=8", "--steps=2", "--warmup_steps=1")

    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = _json_lines(result.stdout)
    for key in TRAIN_KEYS:
        assert key in record, key
    for key in POSITIVE_KEYS:
        assert record[key] > 0, key
    assert record["arch"] == "resnet20"
    assert record["variant"] == "float"
    assert record["batch"] == 4
    assert record["resolution"] == 8
    assert record["devices"] == 4
    assert record["compiles_after_first_step"] == 0
    assert record["memory_source"] in ("device_peak_bytes_in_use", "host_peak_rss_call",
                                       "host_peak_rss_process")


def test_input_json_smoke():
    result = _run("--mode=input", "--json", "--batch_size=4", "--image_size=32", "--steps=2",
                  "--warmup_steps=1")

    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = _json_lines(result.stdout)
    assert record["mode"] == "input"
    assert record["dataset"] == "imagenet2012 (miniature)"
    for key in ("images_per_s", "images_per_s_per_core", "cpu_cores", "mean_jpeg_bytes"):
        assert record[key] > 0, key


def test_input_mode_without_imagenet_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("--mode=input", f"--data_dir={empty}", f"--manual_dir={empty}",
                  "--batch_size=2", "--steps=1", "--warmup_steps=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "ILSVRC2012_img_train.tar" in result.stderr


def test_invalid_variant_exits_2():
    result = _run("--variants=float,int8")

    assert result.returncode == 2
    assert "Invalid --variants=float,int8" in result.stderr
    assert "float, fat, uniform" in result.stderr


@pytest.mark.parametrize(("overrides", "message"), [
    ({"variants": []}, "Invalid --variants="),
    ({"variants": ["fat", "fat"]}, "Invalid --variants=fat,fat"),
    ({"batch_size": 6}, r"Invalid --batch_size=6: expected a positive multiple of the device"
                        r" count \(4\)"),
    ({"steps": 0}, "Invalid --steps=0"),
    ({"warmup_steps": -1}, "Invalid --warmup_steps=-1"),
    ({"bits": 32}, r"Invalid --bits=32: expected an integer from 2 to 8"),
    ({"image_size": -8}, "Invalid --image_size=-8"),
])
def test_bad_train_flags_rejected(overrides, message):
    values = dict(variants=["float", "fat"], batch_size=8, steps=1, warmup_steps=0, bits=4,
                  image_size=8, device_count=4)
    values.update(overrides)

    with pytest.raises(benchmark.FlagError, match=message):
        benchmark.check_train_flags(**values)


def _result(variant, step_time_s, **extra):
    return {
        "arch": "resnet20", "variant": variant, "batch": 128, "resolution": 32,
        "bits": "float" if variant == "float" else "W4A4",
        "grid": None if variant == "float" else "uniform", "devices": 1, "backend": "cpu",
        "processes": 1, "cpu": "Test CPU", "cpu_cores": 2, "jax_version": "0.0",
        "load_average_start": 1.0, "load_average_end": 1.5, "compile_s": 20.0,
        "first_step_s": 21.0, "step_time_s": step_time_s, "step_time_min_s": step_time_s,
        "step_time_max_s": step_time_s, "images_per_s": 128 / step_time_s,
        "ratio_to_float": step_time_s / 2.0, "peak_memory_bytes": 2**30,
        "memory_source": "host_peak_rss_call", "compiles_after_first_step": 0, **extra,
    }


def test_train_table_lists_variants_and_share():
    share = {"method": "ablation", "weight_path_share": 0.01,
             "activation_quantizer_share": 0.04, "transform_and_quantizers_share": 0.05,
             "transform_share": 0.005, "weight_path_alone_s": 0.007,
             "weight_path_alone_share": 0.0035, "quantized_convs": 19}
    results = [_result("float", 2.0), _result("fat", 2.1, share=share),
               _result("uniform", 2.09)]

    table = benchmark.train_table(results)

    assert "global batch 128 at 32x32" in table
    assert "Load average (1 min): 1.0 at start, 1.5 at end" in table
    for variant, ratio in (("float", "1.000"), ("fat", "1.050"), ("uniform", "1.045")):
        (line,) = [row for row in table.splitlines() if row.startswith(variant + " ")]
        assert ratio in line, line
    assert "activation quantizers 4.0%" in table
    assert "weight path timed alone 7.0 ms (0.4%, 19 quantized convs)" in table
    assert "Compilations after the first step: none." in table


def test_train_table_names_recompiling_variant():
    results = [_result("float", 2.0), _result("fat", 2.1, compiles_after_first_step=1)]

    table = benchmark.train_table(results)

    assert "Compilations after the first step: in fat." in table
