"""Shared pytest set-up: MindSpore context and a fixed numpy seed (pytest.ini puts the repository on the path).

Helpers that tests import (tiny network sizes, synthetic speakers) are in fixtures.py.
"""

import numpy as np
import pytest

@pytest.fixture(scope="session", autouse=True)
def mindspore_cpu_graph_mode():
    """Every test runs MindSpore graphs on the CPU, as CI does."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    # set_device (not set_context) so that src.device.init_context may set it again later.
    ms.set_device("CPU")
    ms.set_seed(0)
    yield


@pytest.fixture
def rng():
    """A seeded numpy Generator."""
    return np.random.default_rng(0)
