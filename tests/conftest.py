"""Test setup: four host CPU devices so sharded code runs on a real mesh."""

import os
import tempfile

# Must be set before JAX is imported anywhere in the test process.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Many tests build the same model; a compilation cache shared by the test process and
# the trainer subprocesses it starts compiles each program once per session.
_OWN_CACHE_DIR = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE_DIR = tempfile.mkdtemp(prefix="fat_jax_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE_DIR
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pathlib  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference" / "official_resnet20_cifar10_w4a4"


@pytest.fixture(scope="session")
def reference_dir() -> pathlib.Path:
    """The released reference checkpoint folder, or a skip naming what is missing."""
    needed = ["weights.safetensors", "golden.npz", "layers.json"]
    missing = [name for name in needed if not (REFERENCE_DIR / name).is_file()]
    if missing:
        pytest.skip(f"reference checkpoint files missing from {REFERENCE_DIR}: {', '.join(missing)}")
    return REFERENCE_DIR


def pytest_sessionfinish(session, exitstatus):
    del session, exitstatus
    if _OWN_CACHE_DIR:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)
