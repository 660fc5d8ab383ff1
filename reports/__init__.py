"""What it means: invoices, chargeback, forecasts, budgets, exports, the dashboard's queries.

Import from the modules (`reports.invoice`, ...); the package itself imports nothing.
"""
