"""The applications on top of the library: the ``denarius`` command line, the bench and the quickstart.

Installed as ``denarius.apps``. Apps may import every layer (engine, training, export,
evaluation, serving); no layer imports an app. The gRPC server itself is ``denarius.serving``.
"""
