"""Generated from proto/denarius; see serving/proto_gen.py."""
