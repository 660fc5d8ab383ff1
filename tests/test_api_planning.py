"""agenttally.forecast and agenttally.budgets on a simulated store."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pytest

import agenttally
from tests.conftest import seeded_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return seeded_demo(tmp_path_factory.mktemp("api") / "demo.duckdb", days=28,
                       end=date(2026, 11, 19))


def test_forecast_by_team_adds_up_to_the_organisation(demo):
    with agenttally.open_store(demo, read_only=True) as store:
        ahead = agenttally.forecast(store, by="team", horizon=10, as_of="2026-11-20",
                                    n_paths=300)
    assert isinstance(ahead, agenttally.GroupForecasts) and ahead.groups
    assert ahead.total.origin == date(2026, 11, 20) and ahead.total.horizon == 10
    summed = sum(f.paths for f in ahead.groups.values())
    assert np.allclose(summed, ahead.total.paths, rtol=0, atol=1e-6)
    interval = ahead.total.total()
    assert Decimal(0) < interval.lo80 <= interval.mean <= interval.hi80


def test_forecast_refuses_a_bad_group_or_horizon(demo):
    with agenttally.open_store(demo, read_only=True) as store:
        with pytest.raises(agenttally.UsageError, match="unknown group 'colour'"):
            agenttally.forecast(store, by="colour")
        with pytest.raises(agenttally.UsageError, match="at least 1 day"):
            agenttally.forecast(store, horizon=0)


def test_budgets_read_the_same_forecast(demo):
    budget = agenttally.Budget(name="all", group="total", amount=Decimal("1000000"))
    with agenttally.open_store(demo, read_only=True) as store:
        [status] = agenttally.budgets(store, [budget], as_of="2026-11-20", n_paths=300)
    assert status.period == "2026-11" and status.p_overrun == 0.0
    assert status.actual > 0 and status.forecast_end.mean > status.actual
