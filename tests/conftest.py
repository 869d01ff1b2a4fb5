"""Fixtures shared by several test modules."""

import pytest
import torch

from diffcodec.checkpoint import load_model
from diffcodec.diffusion import GaussianDiffusion
from diffcodec.schedule import ScheduleConfig


@pytest.fixture(scope="module")
def sched():
    """The paper's schedule: linear β from 1e-4 to 0.02, T = 1000."""
    return ScheduleConfig().build()


@pytest.fixture(scope="module")
def diff(sched):
    return GaussianDiffusion(sched)


@pytest.fixture(scope="module")
def model():
    """The shipped ``default`` model, loaded once per module: small, so codec tests stay quick."""
    return load_model("default")


@pytest.fixture
def one_thread():
    """One CPU thread: on a small, busy machine extra threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
