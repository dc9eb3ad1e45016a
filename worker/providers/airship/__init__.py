"""Airship Wallet (formerly Urban Airship Wallet): the third platform (docs/airship.md)."""
