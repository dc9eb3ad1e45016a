"""DOMAIN: bulk issuance campaigns (not built yet)."""
