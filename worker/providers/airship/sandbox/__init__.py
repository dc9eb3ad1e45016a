"""A local Airship Wallet-compatible API for tests, demos and `passsync run` without keys."""
