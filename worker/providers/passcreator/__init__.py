"""Passcreator REST client."""
