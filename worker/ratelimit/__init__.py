"""INFRA: the shared provider rate limiter (Redis GCRA, realtime and bulk lanes, 429 holds)."""
