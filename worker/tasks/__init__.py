"""EDGE: Celery app, thin tasks and the beat schedule (the only package that imports celery)."""
