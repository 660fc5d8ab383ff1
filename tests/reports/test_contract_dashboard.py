"""The dashboard's contract view: credit balance, run-out date, commitment utilisation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np

from reports.dashboard.contracts import contract_view, run_out
from reports.dashboard.filters import Filters
from tests.reports.test_contract_reports import three_teams

D = Decimal


def test_run_out_is_the_day_the_cumulative_spend_meets_the_balance():
    paths = np.array([[1.0] * 10, [2.0] * 10, [0.5] * 10])
    # balance 4: day index 3 (1+1+1+1), 1 (2+2), 7 (8 x 0.5): median 3, p10 1, p90 7
    assert run_out(paths, 4.0, date(2026, 12, 1)) == (date(2026, 12, 4), date(2026, 12, 2),
                                                      date(2026, 12, 8))
    assert run_out(paths, 100.0, date(2026, 12, 1)) == (None, None, None)


def test_contract_view_shows_balance_and_utilisation(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\nversion = "1"\neffective_from = 2026-11-01\nowner = "me"\n'
                    '[[credits]]\nid = "g"\namount = "10"\nstart = 2026-11-01\n'
                    'expires = 2027-06-30\n[[commitments]]\nid = "c"\namount = "5"\n'
                    'meters = ["tokens"]\n', encoding="utf-8")
    view = contract_view(three_teams(), Filters(period="2026-11"), str(path), n_paths=50)
    # list 6.96, tokens 6.00 >= 5: no true-up; the credit pays 6.96, 3.04 left
    assert (view["list_amount"], view["amount_due"], view["balance"]) == (
        D("6.96"), D("0.00"), D("3.04"))
    assert view["commitments"][0]["utilisation_percent"] == D("120.0")
    assert view["first_expiry"] == date(2027, 6, 30)


def test_without_a_contract_the_view_says_how_to_set_one():
    assert contract_view(three_teams(), Filters()) == {"contract": None,
                                                       "env": "AGENTTALLY_CONTRACTS"}
