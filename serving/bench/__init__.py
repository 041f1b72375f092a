"""Benchmarks: `denarius bench` (see ``serving/bench/suite.py``)."""
