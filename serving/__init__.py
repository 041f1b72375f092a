"""Denarius serving layer: gRPC server and client, batch scanner, benchmarks and the CLI.

Never imports torch, ``training`` or ``export`` at module level.
"""
