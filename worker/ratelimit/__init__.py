"""INFRA: the shared provider rate limiter (not built yet)."""
