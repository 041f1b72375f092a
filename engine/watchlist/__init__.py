"""A watchlist of physical specimens: is this coin the very one listed (stolen, bought, seen)?

Same type is not enough: specimens of one type, even struck from one die, share the design.
``descriptor.py`` (ORB keypoints + a global descriptor per side on the canonical crop),
``index.py`` (the embedded HNSW index), ``verify.py`` (ratio-test matches + RANSAC on both
sides: same specimen / same die / different), ``store.py`` (the crash-safe directory:
SQLite + index file). Public API::

    from denarius.engine.watchlist import Watchlist
    with Watchlist("lists/stolen") as watchlist:
        watchlist.add("inv-1723", "obv.jpg", "rev.jpg", source="police report 17/23")
        matches = watchlist.match("listing_obv.jpg", "listing_rev.jpg")
"""

from denarius.engine.watchlist.store import DIFFERENT, SAME_DIE, SAME_SPECIMEN, Specimen, Watchlist, WatchlistMatch

__all__ = ["Watchlist", "Specimen", "WatchlistMatch", "SAME_SPECIMEN", "SAME_DIE", "DIFFERENT"]
