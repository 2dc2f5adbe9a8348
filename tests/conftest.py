"""Test-session settings and the fixtures shared by several test files."""

from pathlib import Path

import pytest
import torch

# The tests run tiny tensors, for which one intra-op thread is faster than several and avoids
# thread-synchronisation stalls on a busy machine (CI has 2 cores).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A folder of fake MNIST files (60 training and 30 test digits), written once per session
    and only read (the Moving MNIST caches go to its ``cache/``, keyed by their settings), for
    ``support.tiny_run``. A test that damages the files defines its own ``mnist_root``."""
    from mnist_fixtures import write_fake_mnist

    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=60, n_test=30)
