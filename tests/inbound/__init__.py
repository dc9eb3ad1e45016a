"""Tests for worker/inbound."""
