"""Shared fixtures for strategy tests: a fake clock so per-problem seconds are exact."""

import itertools

import pytest

import inference.strategies.common as common


@pytest.fixture
def unit_clock(monkeypatch):
    """Every model call lasts exactly 1.0 s (perf_counter returns 0, 1, 2, ...)."""
    ticks = itertools.count()
    monkeypatch.setattr(common, "perf_counter", lambda: float(next(ticks)))
