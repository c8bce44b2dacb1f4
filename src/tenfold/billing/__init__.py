"""Prices and the per-request usage ledger."""
