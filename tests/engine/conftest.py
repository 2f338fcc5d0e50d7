"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest
from machines import Drive

from mshare_hw.engine.params import SimParams


@pytest.fixture(params=["cython", "reference"])
def drive(request):
    def make(params: SimParams, n_procs: int = 1, regions=(), dependent=()) -> Drive:
        return Drive(request.param, params, n_procs, regions, dependent)

    return make
