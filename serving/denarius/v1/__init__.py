"""Generated gRPC stubs for denarius.v1 (run python -m serving.proto_gen to refresh)."""
