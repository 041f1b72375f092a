"""Batch scanning of coin collections (``denarius scan``): local threads, a server, or Ray.

See ``serving/scan/pipeline.py`` for the runners, ``journal.py`` for the exactly-once
resumable output and ``records.py`` for the line format. Ray is imported only by
``ray_scan.py``, grpc only by ``remote.py``.
"""

from denarius.serving.scan.inputs import CoinItem, ScanInput, discover
from denarius.serving.scan.journal import Journal, header_path
from denarius.serving.scan.pipeline import ScanConfig, ScanSummary, run_scan

__all__ = ["CoinItem", "ScanInput", "discover", "Journal", "header_path", "ScanConfig", "ScanSummary", "run_scan"]
