"""Tests of the command lines: experiments.train and experiments.evaluate."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from fat_jax import data

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 900


def _run(module, *args, env_overrides=None):
    env = dict(os.environ)
    env.pop("FAT_JAX_IMAGENET_DIR", None)
    env.update(env_overrides or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("digits_tfds"))


def test_missing_imagenet_exits_2(tmp_path):
    empty = tmp_path / "archives"
    empty.mkdir()
    result = _run("experiments.train", "--config=configs/mobilenetv2_w4a4.py",
                  f"--workdir={tmp_path / 'run'}", f"--config.dataset.data_dir={tmp_path / 'tfds'}",
                  f"--config.dataset.manual_dir={empty}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ILSVRC2012_img_train.tar" in result.stderr
    assert "ILSVRC2012_img_val.tar" in result.stderr
    assert str(empty) in result.stderr
    assert "dataset.manual_dir" in result.stderr
    assert "FAT_JAX_IMAGENET_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory):
    """Environment in which importing TensorFlow fails, to prove that a check ran first."""
    stub = tmp_path_factory.mktemp("no_tensorflow") / "tensorflow"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('TensorFlow imported too early')\n")
    return {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(REPO_ROOT)])}


@pytest.mark.parametrize("override, message", [
    ("--config.quant.weight_bits=9", r"config.quant.weight_bits=9: expected an integer from 2"
                                     r" to 8, or 32"),
    ("--config.model.arch=resnet99", r"config.model.arch='resnet99': expected one of"
                                     r" .*resnet20"),
    ("--config.dataset.name=mnist", r"config.dataset.name='mnist': expected one of cifar10,"
                                    r" digits, imagenet2012"),
    ("--config.batch_size=0", r"config.batch_size=0: expected a positive integer"),
    ("--config.optimizer.groups.default.lr=0", r"config.optimizer.groups.default.lr=0.0:"
                                               r" expected a positive number"),
    ("--config.batch_size=30", r"config.batch_size=30: expected a multiple of the device"
                               r" count \(4\)"),
    ("--config.init_from=/nonexistent/run", r"config.init_from='/nonexistent/run': expected"
                                            r" an existing run workdir"),
    ("--config=configs/digits.py:bitz=3", r"--config=configs/digits.py:bitz=3: Invalid config"
                                          r" argument 'bitz=3': expected keys arch, bits"),
    ("--config.batch_size=many", r"--config.batch_size=many"),
    ("--config=configs/missing.py", r"cannot load the config file: .*configs/missing.py"),
    ("--config.nosuch=3", r"Unknown config field in '--config.nosuch=3': config has no field"
                          r" 'nosuch'. Its fields: batch_size, "),
    ("--config.quant.nobits=3", r"config.quant has no field 'nobits'. Its fields:"
                                r" act_alpha_grad, "),
    ("--config.model.arch.depth=3", r"config.model.arch is a value \('resnet20'\), not a"
                                    r" group of fields"),
])
def test_invalid_config_exits_2(tmp_path, digits_dir, without_tensorflow, override, message):
    # --config must come before the --config.FIELD overrides.
    result = _run("experiments.train", override, f"--workdir={tmp_path}",
                  f"--config.dataset.data_dir={digits_dir}", env_overrides=without_tensorflow)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def _single_error(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize("module", ["experiments.train", "experiments.evaluate"])
def test_config_file_without_get_config_exits_2(tmp_path, without_tensorflow, module):
    not_python = tmp_path / "config.yaml"
    not_python.write_text("model:\n  arch: resnet20\n")
    result = _run(module, f"--config={not_python}", f"--checkpoint={tmp_path}",
                  f"--workdir={tmp_path / 'run'}", env_overrides=without_tensorflow)
    error = _single_error(result)
    assert "cannot load the config file:" in error
    assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file_exits_2(tmp_path, digits_dir, without_tensorflow):
    results = tmp_path / "results.txt"
    results.write_text("a user's notes\n")
    for workdir in (results, results / "run"):
        result = _run("experiments.train", f"--workdir={workdir}",
                      f"--config.dataset.data_dir={digits_dir}", env_overrides=without_tensorflow)
        assert f"Workdir path {results} is a file, not a directory" in _single_error(result)
        assert results.read_text() == "a user's notes\n"


@pytest.mark.parametrize("args, message", [
    ([], r"Flag --checkpoint must have a value other than None"),
    (["--checkpoint=x", "--config.nosuch=1"], r"config has no field 'nosuch'"),
    (["--checkpoint=x", "--config.batch_size=many"], r"--config.batch_size=many"),
])
def test_evaluate_usage_errors_exit_2(args, message):
    assert re.search(message, _single_error(_run("experiments.evaluate", *args)))


@pytest.mark.slow
def test_train_then_evaluate_digits(tmp_path, digits_dir):
    workdir = tmp_path / "run"
    result = _run("experiments.train", f"--workdir={workdir}",
                  f"--config.dataset.data_dir={digits_dir}", "--config.num_train_steps=3",
                  "--config.log_every_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Workdir: {workdir}" in result.stdout
    for field in ("best top-1:", "final top-1:", "bits:         W4A4", "parameters:   272,474",
                  "wall time:", "checkpoints:", "TensorBoard:"):
        assert field in result.stdout
    assert re.search(r"step 3/3 .* steps/s, .* images/s, ETA", result.stderr)

    evaluated = _run("experiments.evaluate", f"--config.dataset.data_dir={digits_dir}",
                     f"--checkpoint={workdir}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert re.search(r"resnet20 on digits \(360 examples\): top-1 \d+\.\d\d%", evaluated.stdout)

    # A config of another architecture, bit width or grid is named as the problem,
    # from the run's saved config.
    for fields, difference in [
            (["--config.model.arch=resnet32"], "model.arch: 'resnet20' -> 'resnet32'"),
            (["--config.quant.weight_bits=32", "--config.quant.act_bits=32"],
             "quant.weight_bits: 4 -> 32"),
            (["--config.quant.grid=log"], "quant.grid: 'uniform' -> 'log'")]:
        mismatched = _run("experiments.evaluate", f"--config.dataset.data_dir={digits_dir}",
                          *fields, f"--checkpoint={workdir}")
        error = _single_error(mismatched)
        assert f"The run in {workdir} was trained with another model or quantization" in error
        assert difference in error

    # Without the saved config, the arrays' shapes still reveal another architecture.
    (workdir / "config.json").unlink()
    mismatched = _run("experiments.evaluate", f"--config.dataset.data_dir={digits_dir}",
                      "--config.model.arch=resnet32", f"--checkpoint={workdir}")
    error = _single_error(mismatched)
    assert f"The checkpoint {workdir} does not fit the config's model" in error
    assert "config.json" in error


def test_evaluate_unreadable_checkpoint_exits_2(tmp_path):
    step_dir = tmp_path / "checkpoints" / "7"
    step_dir.mkdir(parents=True)
    (step_dir / "notes.txt").write_text("not a checkpoint\n")
    error = _single_error(_run("experiments.evaluate", f"--checkpoint={tmp_path}"))
    assert f"Cannot read the checkpoint at step 7 in {tmp_path / 'checkpoints'}" in error
    assert (step_dir / "notes.txt").read_text() == "not a checkpoint\n"


def test_evaluate_bad_checkpoint_path(tmp_path):
    result = _run("experiments.evaluate", f"--checkpoint={tmp_path / 'nothing'}")
    assert result.returncode == 2
    assert "not a file, a run workdir or a checkpoint step directory" in result.stderr


@pytest.mark.slow
def test_headline_mobilenetv2_on_miniature_imagenet(tmp_path):
    data_dir, manual_dir = data.prepare_miniature_imagenet(tmp_path / "imagenet")
    workdir = tmp_path / "run"
    result = _run("experiments.train", "--config=configs/mobilenetv2_w4a4.py",
                  f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
                  f"--config.dataset.manual_dir={manual_dir}", "--config.batch_size=8",
                  "--config.eval_batch_size=8", "--config.num_train_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bits:         W4A4" in result.stdout
    assert "parameters:   3,504,872" in result.stdout
    assert re.search(r"eval after epoch \d+ \(step 2\).* on 50 examples", result.stderr)
    assert (workdir / "checkpoints" / "2").is_dir()
