"""DOMAIN: scan ledger and pass usage (not built yet)."""
