"""Shared pytest set-up: import path, MindSpore context and a fixed numpy seed.

Helpers that tests import (tiny network sizes, synthetic speakers) are in fixtures.py.
"""
import os
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(scope="session", autouse=True)
def mindspore_cpu_graph_mode():
    """Every test runs MindSpore graphs on the CPU, as CI does."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    # set_device (not set_context) so that src.runtime.init_context may set it again later.
    ms.set_device("CPU")
    ms.set_seed(0)
    yield


@pytest.fixture
def rng():
    """A seeded numpy Generator."""
    return np.random.default_rng(0)
