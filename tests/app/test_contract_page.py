"""The chargeback page's contract section (issue 20), with and without a contract."""

from __future__ import annotations

from tests.app.conftest import ROOT
from tests.app.test_pages import open_page, texts


def test_chargeback_page_shows_the_contract_when_one_is_set(monkeypatch, tiny_store):
    monkeypatch.setenv("AGENTTALLY_CONTRACTS", str(ROOT / "data/contracts/example-2026.toml"))
    at = open_page(monkeypatch, tiny_store, "pages/chargeback.py")
    assert not at.exception, at.exception[0].value if at.exception else ""
    labels = {m.label for m in at.metric}
    assert {"Amount due", "Credit balance", "Credit runs out", "First expiry"} <= labels


def test_chargeback_page_says_how_to_set_a_contract(monkeypatch, tiny_store):
    monkeypatch.delenv("AGENTTALLY_CONTRACTS", raising=False)
    at = open_page(monkeypatch, tiny_store, "pages/chargeback.py")
    assert "Set `AGENTTALLY_CONTRACTS` to a contract file" in texts(at)
