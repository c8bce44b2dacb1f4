"""Adapter deployments and model routing."""
