"""Tests for worker/api."""
