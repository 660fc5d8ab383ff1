"""What it costs: versioned price books, the rating engine, the ledger, what-if scenarios.

Import from the modules (`pricing.rating`, `pricing.pricebook`, ...); the package itself
imports nothing.
"""
