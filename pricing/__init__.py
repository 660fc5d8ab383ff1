"""What it costs: versioned price books, the rating engine, what-if scenarios."""

from pricing.money import round_cents
from pricing.pricebook import PriceBook, PriceBookError, load_pricebook, load_pricebooks
from pricing.rating import RatingOptions, prepare_usage, price_usage, rate

__all__ = [
    "PriceBook", "PriceBookError", "RatingOptions", "load_pricebook", "load_pricebooks",
    "prepare_usage", "price_usage", "rate", "round_cents",
]
