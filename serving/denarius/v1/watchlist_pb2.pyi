from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Specimen(_message.Message):
    __slots__ = ("specimen_id", "source", "note", "added")
    SPECIMEN_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    specimen_id: str
    source: str
    note: str
    added: float
    def __init__(self, specimen_id: _Optional[str] = ..., source: _Optional[str] = ..., note: _Optional[str] = ..., added: _Optional[float] = ...) -> None: ...

class AddSpecimenRequest(_message.Message):
    __slots__ = ("specimen_id", "obverse", "reverse", "source", "note")
    SPECIMEN_ID_FIELD_NUMBER: _ClassVar[int]
    OBVERSE_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    specimen_id: str
    obverse: bytes
    reverse: bytes
    source: str
    note: str
    def __init__(self, specimen_id: _Optional[str] = ..., obverse: _Optional[bytes] = ..., reverse: _Optional[bytes] = ..., source: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RemoveSpecimenRequest(_message.Message):
    __slots__ = ("specimen_id",)
    SPECIMEN_ID_FIELD_NUMBER: _ClassVar[int]
    specimen_id: str
    def __init__(self, specimen_id: _Optional[str] = ...) -> None: ...

class ListSpecimensRequest(_message.Message):
    __slots__ = ("limit", "offset")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListSpecimensResponse(_message.Message):
    __slots__ = ("specimens", "total")
    SPECIMENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    specimens: _containers.RepeatedCompositeFieldContainer[Specimen]
    total: int
    def __init__(self, specimens: _Optional[_Iterable[_Union[Specimen, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("obverse", "reverse", "top_k")
    OBVERSE_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    obverse: bytes
    reverse: bytes
    top_k: int
    def __init__(self, obverse: _Optional[bytes] = ..., reverse: _Optional[bytes] = ..., top_k: _Optional[int] = ...) -> None: ...

class WatchlistMatch(_message.Message):
    __slots__ = ("specimen", "verdict", "obverse_inliers", "reverse_inliers", "similarity")
    SPECIMEN_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    OBVERSE_INLIERS_FIELD_NUMBER: _ClassVar[int]
    REVERSE_INLIERS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    specimen: Specimen
    verdict: str
    obverse_inliers: int
    reverse_inliers: int
    similarity: float
    def __init__(self, specimen: _Optional[_Union[Specimen, _Mapping]] = ..., verdict: _Optional[str] = ..., obverse_inliers: _Optional[int] = ..., reverse_inliers: _Optional[int] = ..., similarity: _Optional[float] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("matches", "listed")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    LISTED_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[WatchlistMatch]
    listed: int
    def __init__(self, matches: _Optional[_Iterable[_Union[WatchlistMatch, _Mapping]]] = ..., listed: _Optional[int] = ...) -> None: ...
