"""Airship Wallet client (not built yet)."""
