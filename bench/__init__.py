"""Benchmarks run by `make bench`; each prints its figures and how they were measured."""
