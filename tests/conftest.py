"""Test setup: four host CPU devices so sharded code runs on a real mesh."""

import os

# Must be set before JAX is imported anywhere in the test process.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

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
