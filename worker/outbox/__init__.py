"""Outbound events to the CRM: the outbox table, its store and delivery."""
