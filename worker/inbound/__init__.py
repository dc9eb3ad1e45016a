"""DOMAIN: inbound event ledger, source payload to canonical event, dedup."""
