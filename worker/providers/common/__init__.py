"""Machinery every platform package shares: HTTP calls with bounded retries, sandbox servers."""
