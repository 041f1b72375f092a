"""A watchlist of physical specimens: is this coin the very one listed (stolen, bought, seen)?

Same type is not enough: specimens of one type, even struck from one die, share the design.
``descriptor.py`` (ORB keypoints and the flan outline per side), ``flan.py`` (the
flan outline found and compared), ``keypoint_index.py`` (candidate retrieval: the listed
keypoints in a faiss binary index, voting), ``verify.py`` (ratio-test matches + RANSAC on
both sides, then the flan outlines: same specimen / same die / different), ``store.py``
(the crash-safe directory: SQLite + index file), ``faiss_setup.py`` (faiss imported
with one OpenMP thread per call). Public API::

    from denarius.engine.watchlist import Watchlist
    with Watchlist("lists/stolen") as watchlist:
        watchlist.add("inv-1723", "obv.jpg", "rev.jpg", source="police report 17/23")
        matches = watchlist.match("listing_obv.jpg", "listing_rev.jpg")
"""

from denarius.engine.watchlist.store import DIFFERENT, SAME_DIE, SAME_SPECIMEN, Specimen, Watchlist, WatchlistMatch

__all__ = ["Watchlist", "Specimen", "WatchlistMatch", "SAME_SPECIMEN", "SAME_DIE", "DIFFERENT"]
