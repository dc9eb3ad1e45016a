"""EDGE: HTTP receiver, admin API (the only package that imports fastapi, with the sandbox)."""
