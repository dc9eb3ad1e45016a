"""DOMAIN: rules, the pass mapping repository and the upsert engine."""
