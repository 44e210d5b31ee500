"""Fixtures shared by the client suites: one eddy per test module."""
import pytest

from pgserver import Eddy


@pytest.fixture(scope="module")
def eddy():
    e = Eddy()
    yield e
    e.stop()
