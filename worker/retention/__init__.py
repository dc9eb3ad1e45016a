"""Retention: finished rows of the ledgers and the outbox are purged past their windows."""
