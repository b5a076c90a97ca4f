"""Shared fixtures: tiny random backbones, a tiny synthetic scenes set, a config that uses both."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("MMADAPT_QUIET", "1")

from tiny import make_model, tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory) -> Path:
    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("scenes")
    write_scenes_dataset(root, "train", 24, seed=0, image_size=32)
    write_scenes_dataset(root, "val", 6, seed=0, image_size=32)
    return root


@pytest.fixture
def config(scenes_root, tmp_path):
    return tiny_config(scenes_root, tmp_path / "run")


@pytest.fixture
def model(config):
    return make_model(config)
