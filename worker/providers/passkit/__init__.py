"""PassKit client (not built yet)."""
