"""Shared pytest set-up: MindSpore context, a fixed numpy seed, and the file claims of
scripts/run_test_processes.py (pytest.ini puts the repository on the path).

Helpers that tests import (tiny network sizes, synthetic speakers) are in fixtures.py.
"""
import os

import numpy as np
import pytest

# Set by scripts/run_test_processes.py: a folder shared by the pytest processes it starts.
FILE_CLAIMS = os.environ.get("TEST_FILE_CLAIMS")
_claimed_here = {}  # test file name: whether this process claimed it


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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """With FILE_CLAIMS: run a test only if this process was first to claim its file.

    A claim is the folder FILE_CLAIMS/<file name>, made once per file when the process meets
    the file's first test; a test of a file another process claimed is passed over unreported
    (returning True ends its protocol). Fixtures are still torn down in time: after each test,
    pytest tears down what the next test in its list, run or not, does not share.
    """
    if not FILE_CLAIMS:
        return None
    name = item.path.name
    if name not in _claimed_here:
        try:
            os.mkdir(os.path.join(FILE_CLAIMS, name))
            _claimed_here[name] = True
        except FileExistsError:
            _claimed_here[name] = False
    return None if _claimed_here[name] else True
