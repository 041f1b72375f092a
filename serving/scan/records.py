"""The JSON line ``denarius scan`` writes per coin, built the same way by every runner.

One line per coin::

    {"coin_id": "c0001", "obverse": "/data/c0001_obv.jpg", "reverse": "/data/c0001_rev.jpg",
     "model_version": "2026-11-28-abc", "mode": "joint", "unknown": false, "open_set_score": 0.83,
     "emperor": "Probus", "ric": "RIC V Probus 10", "score": 0.61,
     "candidates": [{"rank": 1, "ric": "RIC V Probus 10", "emperor": "Probus",
                     "score": 0.61, "p_ric": 0.74, "p_emperor": 0.83}, ...],
     "error": null}

- ``mode``: "joint" (both sides), "emperor"/"ric" (one side only, from a server), "error".
- ``emperor``/``ric``/``score``: the best candidate's (``ric`` is null in an emperor ranking).
- ``unknown``: true when the bundle's open-set rule says the coin is not in the catalogue
  (the candidates are still the best guesses); ``open_set_score``: the score it was decided
  on, null when no decision was made (a bundle without the rule, one side only, an error).
- ``error``: null, or ``{"kind": ..., "message": ...}`` with kind one of :data:`ERROR_KINDS`;
  then ``candidates`` is empty and the answer fields are null.
- ``landmarks`` (only with ``--landmarks``): per side, the top regions in pixels of the
  network input, ``{"target": label, "probability": p, "regions": [{"x","y","width","height","score"}]}``.

No timing fields: a line depends only on the coin, the bundle and the options, so a resumed,
a Ray and an uninterrupted scan write the same lines.
"""

from __future__ import annotations

__all__ = ["ERROR_KINDS", "error_record", "identification_record"]

ERROR_KINDS = {
    "input": "an image could not be decoded or is unusable (corrupt, too small, too large)",
    "read": "an image file could not be read (permissions, I/O error)",
    "missing_file": "a manifest row names an image file that does not exist",
    "unpaired": "an image without its other side, or a file name that matches no pattern",
    "ambiguous": "several images for the same side of one coin",
}


def _base(item, model_version: str | None) -> dict:
    return {
        "coin_id": item.coin_id,
        "obverse": None if item.obverse is None else str(item.obverse),
        "reverse": None if item.reverse is None else str(item.reverse),
        "model_version": model_version,
    }


def error_record(item, *, kind: str, message: str, model_version: str | None) -> dict:
    """The line of a coin that failed (``kind`` from :data:`ERROR_KINDS`)."""
    assert kind in ERROR_KINDS, kind
    return {**_base(item, model_version), "mode": "error", "unknown": False, "open_set_score": None,
            "emperor": None, "ric": None, "score": None, "candidates": [], "error": {"kind": kind, "message": message}}


def identification_record(item, *, mode: str, candidates: list[dict], model_version: str, unknown: bool = False,
                          open_set_score: float | None = None, watchlist_matches: list[dict] | None = None) -> dict:
    """The line of an identified coin.

    Args:
        candidates: best first, each ``{"ric", "emperor", "score", "p_ric", "p_emperor"}``
            (rank is added here; None for a probability of a side that was not given).
        unknown, open_set_score: the open-set decision (``Identification.unknown`` / ``.open_set_score``).
        watchlist_matches: through a server with a watchlist (``serve --watchlist``), its
            matches ``{"specimen_id", "verdict", "obverse_inliers", "reverse_inliers"}``; the
            key is left out when None.
    """
    ranked = [{"rank": rank, **candidate} for rank, candidate in enumerate(candidates, start=1)]
    top = ranked[0]
    record = {**_base(item, model_version), "mode": mode, "unknown": bool(unknown), "open_set_score": open_set_score,
              "emperor": top["emperor"], "ric": top["ric"],
              "score": top["score"], "candidates": ranked, "error": None}
    if watchlist_matches is not None:
        record["watchlist_matches"] = watchlist_matches
    return record
