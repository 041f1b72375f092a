"""Generated gRPC stubs for denarius.v1 (run python -m denarius.serving.proto_gen to refresh)."""
