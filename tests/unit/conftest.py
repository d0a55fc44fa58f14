"""Unit-test fixtures: the shared core harness (tests/harness.py) with a fresh state per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness import Harness


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    return Harness


@pytest.fixture
def h() -> Harness:
    return Harness()
