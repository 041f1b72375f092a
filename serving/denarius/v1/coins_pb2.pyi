from denarius.serving.denarius.v1 import tensor_pb2 as _tensor_pb2
from denarius.serving.denarius.v1 import watchlist_pb2 as _watchlist_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    OBVERSE: _ClassVar[Side]
    REVERSE: _ClassVar[Side]

class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_UNSPECIFIED: _ClassVar[Method]
    OPTIMIZED: _ClassVar[Method]
    OCCLUSION: _ClassVar[Method]
    SALIENCY: _ClassVar[Method]

class Reference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERENCE_UNSPECIFIED: _ClassVar[Reference]
    REFERENCE_BLUR: _ClassVar[Reference]
    REFERENCE_BLACK: _ClassVar[Reference]
SIDE_UNSPECIFIED: Side
OBVERSE: Side
REVERSE: Side
METHOD_UNSPECIFIED: Method
OPTIMIZED: Method
OCCLUSION: Method
SALIENCY: Method
REFERENCE_UNSPECIFIED: Reference
REFERENCE_BLUR: Reference
REFERENCE_BLACK: Reference

class IdentifyRequest(_message.Message):
    __slots__ = ("request_id", "obverse", "reverse", "top_k")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBVERSE_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    obverse: bytes
    reverse: bytes
    top_k: int
    def __init__(self, request_id: _Optional[str] = ..., obverse: _Optional[bytes] = ..., reverse: _Optional[bytes] = ..., top_k: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("rank", "ric", "emperor", "score", "p_ric", "p_emperor", "obverse_description", "reverse_description")
    RANK_FIELD_NUMBER: _ClassVar[int]
    RIC_FIELD_NUMBER: _ClassVar[int]
    EMPEROR_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    P_RIC_FIELD_NUMBER: _ClassVar[int]
    P_EMPEROR_FIELD_NUMBER: _ClassVar[int]
    OBVERSE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REVERSE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    rank: int
    ric: str
    emperor: str
    score: float
    p_ric: float
    p_emperor: float
    obverse_description: str
    reverse_description: str
    def __init__(self, rank: _Optional[int] = ..., ric: _Optional[str] = ..., emperor: _Optional[str] = ..., score: _Optional[float] = ..., p_ric: _Optional[float] = ..., p_emperor: _Optional[float] = ..., obverse_description: _Optional[str] = ..., reverse_description: _Optional[str] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("request_id", "candidates", "model_version", "timing", "mode", "error", "unknown", "open_set_score", "watchlist_matches")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    OPEN_SET_SCORE_FIELD_NUMBER: _ClassVar[int]
    WATCHLIST_MATCHES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_version: str
    timing: _tensor_pb2.Timing
    mode: str
    error: _tensor_pb2.Error
    unknown: bool
    open_set_score: float
    watchlist_matches: _containers.RepeatedCompositeFieldContainer[_watchlist_pb2.WatchlistMatch]
    def __init__(self, request_id: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_version: _Optional[str] = ..., timing: _Optional[_Union[_tensor_pb2.Timing, _Mapping]] = ..., mode: _Optional[str] = ..., error: _Optional[_Union[_tensor_pb2.Error, _Mapping]] = ..., unknown: _Optional[bool] = ..., open_set_score: _Optional[float] = ..., watchlist_matches: _Optional[_Iterable[_Union[_watchlist_pb2.WatchlistMatch, _Mapping]]] = ...) -> None: ...

class Windows(_message.Message):
    __slots__ = ("size", "stride")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    size: int
    stride: int
    def __init__(self, size: _Optional[int] = ..., stride: _Optional[int] = ...) -> None: ...

class Superpixels(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class Pixels(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LandmarksRequest(_message.Message):
    __slots__ = ("request_id", "image", "side", "method", "epsilon", "sparsity", "windows", "superpixels", "pixels", "target", "top_regions", "include_overlay", "max_iterations", "reference")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SUPERPIXELS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TOP_REGIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OVERLAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: bytes
    side: Side
    method: Method
    epsilon: float
    sparsity: float
    windows: Windows
    superpixels: Superpixels
    pixels: Pixels
    target: str
    top_regions: int
    include_overlay: bool
    max_iterations: int
    reference: Reference
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., side: _Optional[_Union[Side, str]] = ..., method: _Optional[_Union[Method, str]] = ..., epsilon: _Optional[float] = ..., sparsity: _Optional[float] = ..., windows: _Optional[_Union[Windows, _Mapping]] = ..., superpixels: _Optional[_Union[Superpixels, _Mapping]] = ..., pixels: _Optional[_Union[Pixels, _Mapping]] = ..., target: _Optional[str] = ..., top_regions: _Optional[int] = ..., include_overlay: _Optional[bool] = ..., max_iterations: _Optional[int] = ..., reference: _Optional[_Union[Reference, str]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("x", "y", "width", "height", "score")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    score: float
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class LandmarksResponse(_message.Message):
    __slots__ = ("request_id", "heatmap", "regions", "target", "probability", "masked_probability", "probabilities", "overlay_png", "model_version", "timing", "method", "epsilon", "iterations", "converged", "region_kind", "forward_equivalents", "reference")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MASKED_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    REGION_KIND_FIELD_NUMBER: _ClassVar[int]
    FORWARD_EQUIVALENTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    heatmap: _tensor_pb2.FloatArray
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    target: str
    probability: float
    masked_probability: float
    probabilities: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    overlay_png: bytes
    model_version: str
    timing: _tensor_pb2.Timing
    method: Method
    epsilon: float
    iterations: int
    converged: bool
    region_kind: str
    forward_equivalents: float
    reference: str
    def __init__(self, request_id: _Optional[str] = ..., heatmap: _Optional[_Union[_tensor_pb2.FloatArray, _Mapping]] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., target: _Optional[str] = ..., probability: _Optional[float] = ..., masked_probability: _Optional[float] = ..., probabilities: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., overlay_png: _Optional[bytes] = ..., model_version: _Optional[str] = ..., timing: _Optional[_Union[_tensor_pb2.Timing, _Mapping]] = ..., method: _Optional[_Union[Method, str]] = ..., epsilon: _Optional[float] = ..., iterations: _Optional[int] = ..., converged: _Optional[bool] = ..., region_kind: _Optional[str] = ..., forward_equivalents: _Optional[float] = ..., reference: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EmperorClasses(_message.Message):
    __slots__ = ("emperor", "rics")
    EMPEROR_FIELD_NUMBER: _ClassVar[int]
    RICS_FIELD_NUMBER: _ClassVar[int]
    emperor: str
    rics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, emperor: _Optional[str] = ..., rics: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "created", "schema_version", "emperors", "rics", "hierarchy", "backend", "precision", "input_size", "max_pixels", "max_message_bytes", "max_batch", "stream_window", "server_version", "metrics", "calibrated", "temperatures", "open_set_score", "open_set_threshold", "open_set_far")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TemperaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMPERORS_FIELD_NUMBER: _ClassVar[int]
    RICS_FIELD_NUMBER: _ClassVar[int]
    HIERARCHY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    STREAM_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_FIELD_NUMBER: _ClassVar[int]
    OPEN_SET_SCORE_FIELD_NUMBER: _ClassVar[int]
    OPEN_SET_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OPEN_SET_FAR_FIELD_NUMBER: _ClassVar[int]
    version: str
    created: str
    schema_version: int
    emperors: _containers.RepeatedScalarFieldContainer[str]
    rics: _containers.RepeatedScalarFieldContainer[str]
    hierarchy: _containers.RepeatedCompositeFieldContainer[EmperorClasses]
    backend: str
    precision: str
    input_size: int
    max_pixels: int
    max_message_bytes: int
    max_batch: int
    stream_window: int
    server_version: str
    metrics: _containers.ScalarMap[str, float]
    calibrated: bool
    temperatures: _containers.ScalarMap[str, float]
    open_set_score: str
    open_set_threshold: float
    open_set_far: float
    def __init__(self, version: _Optional[str] = ..., created: _Optional[str] = ..., schema_version: _Optional[int] = ..., emperors: _Optional[_Iterable[str]] = ..., rics: _Optional[_Iterable[str]] = ..., hierarchy: _Optional[_Iterable[_Union[EmperorClasses, _Mapping]]] = ..., backend: _Optional[str] = ..., precision: _Optional[str] = ..., input_size: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_batch: _Optional[int] = ..., stream_window: _Optional[int] = ..., server_version: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., calibrated: _Optional[bool] = ..., temperatures: _Optional[_Mapping[str, float]] = ..., open_set_score: _Optional[str] = ..., open_set_threshold: _Optional[float] = ..., open_set_far: _Optional[float] = ...) -> None: ...
