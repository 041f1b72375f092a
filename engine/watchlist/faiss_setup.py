"""faiss, imported once with the settings the watchlist runs under.

Its loader logs at INFO which CPU build it tried; and one search here is small (a few
hundred descriptors), so faiss's OpenMP threads would only contend with the server's other
requests and with the watchlist's own match threads (``store.py``): one thread per call.
"""

from __future__ import annotations

import logging

logging.getLogger("faiss.loader").setLevel(logging.WARNING)
import faiss  # noqa: E402

faiss.omp_set_num_threads(1)

__all__ = ["faiss"]
