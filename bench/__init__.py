"""Benchmarks of the core, each printing its figures and its ratio to a plain baseline."""
