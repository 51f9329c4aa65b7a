"""Test set-up: no hub access, a reproducible hypothesis profile, the repo's example folder."""

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ["HF_HUB_OFFLINE"] = "1"  # any hidden model-hub access fails loudly
os.environ["TRANSFORMERS_VERBOSITY"] = "error"


class NetworkAccess(AssertionError):
    """A test tried to reach the network; nothing may (models are built from code)."""


_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127.")):
        return _connect(self, address)
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, address)
    raise NetworkAccess(f"a test tried to connect to {address!r}")


socket.socket.connect = _guarded_connect

settings.register_profile(
    "default", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def examples_dir() -> Path:
    return ROOT / "examples"


def by_hand_pipeline(cls, models: Path, name: str):
    """A plain diffusers pipeline of class `cls` on tiny model `name`, as a user would make it
    by hand (the WebUI's Euler a), to compare Multipass's results with."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from lib_multipass import tiny

    config = tiny.write_config_dir(models.parent / "by-hand-config", tiny.architecture())
    pipe = cls.from_single_file(
        str(models / f"{name}.safetensors"),
        config=str(config),
        local_files_only=True,
        torch_dtype=torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """The built-in tiny checkpoints, built once per test session."""
    pytest.importorskip("torch")
    from lib_multipass.tiny import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def backend(tiny_models, tmp_path):
    """A fresh diffusers backend (empty RAM cache, zero counters) over the tiny models."""
    from lib_multipass.backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend([tiny_models], home=tiny_models.parent / "home")


def misshapen_copy(tiny_models, path):
    """A whole, well-formed checkpoint whose weights do not fit its architecture: it passes
    every check made before the job and fails when loaded, as a broken merge would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_models / "tiny-toon.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
        meta = fh.metadata()
    key = next(k for k in tensors if k.endswith("out.2.weight"))
    tensors[key] = tensors[key][:, :2].contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
