"""What it means: invoices, chargeback, forecasts, budgets, exports, the CLI."""

from reports.invoice import Invoice, build_invoice

__all__ = ["Invoice", "build_invoice"]
