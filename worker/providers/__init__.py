"""ADAPTERS: the provider port, its error family and one client package per platform."""
