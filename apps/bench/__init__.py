"""Benchmarks: `denarius bench` (see ``apps/bench/suite.py``)."""
