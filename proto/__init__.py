"""The service's .proto sources, shipped in the wheel as ``denarius.proto`` for clients in other languages.

    from importlib.resources import files
    coins_proto = files("denarius.proto") / "denarius" / "v1" / "coins.proto"

Generated Python stubs live in ``denarius.serving.denarius.v1`` (``python -m denarius.serving.proto_gen``).
"""
