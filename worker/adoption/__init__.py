"""DOMAIN: adoption funnel facts and metrics (not built yet)."""
