"""``denarius serve BUNDLE``: run the gRPC server until SIGTERM/SIGINT, then drain and exit 0.

BUNDLE is a bundle folder or a model repository of versions (``BUNDLE/<version>/``, the
highest served); SIGHUP, or ``--watch-interval``, reloads it without dropping a call.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


EXAMPLES = (
    'denarius serve bundles/v1 --port 50051',
    'denarius serve bundles/v1 --tls-cert server.pem --tls-key server.key --token-file tokens.txt',
    'denarius serve bundles/v1 --bundle-key keys/bundle.pub.pem',
    'denarius serve bundles/v1 --http-port 8080',
    'denarius serve models/coins --watch-interval 10',
    'denarius serve bundles/v1 --watchlist lists/stolen --token-file tokens.txt',
)  # shown under `denarius serve --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path,
                        help="model bundle directory (made by `denarius export`), or a model repository of versioned "
                             "bundles BUNDLE/<version>/manifest.json: the highest version is served (natural order: "
                             "2 < 10, v2 < v10; hidden folders and folders without manifest.json are skipped). "
                             "SIGHUP reloads it (the same folder, or the highest version) without dropping a call")
    parser.add_argument("--watch-interval", type=float, default=None, metavar="S",
                        help="also poll BUNDLE every S seconds and reload when a new version appears (or its "
                             "manifest.json is rewritten); a bundle that fails to load is logged and the old one "
                             "keeps serving (default: reload on SIGHUP only)")
    parser.add_argument("--watchlist", type=Path, default=None, metavar="DIR",
                        help="a watchlist directory (`denarius watchlist`): serve the Watchlist service and add "
                             "watchlist_matches (same specimen / same die) to Identify answers; created when missing")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="listen address (default 127.0.0.1; 0.0.0.0 or [::] to accept remote clients)")
    net.add_argument("--port", type=int, default=50051, help="gRPC port (default 50051; 0 = any free port)")
    net.add_argument("--metrics-port", type=int, default=9095,
                     help="Prometheus /metrics port (default 9095; 0 = any free port; -1 = disabled)")
    net.add_argument("--metrics-host", default="127.0.0.1",
                     help="metrics listen address (default 127.0.0.1, whatever --host is; 0.0.0.0 for a remote scraper)")
    net.add_argument("--metrics-tls-cert", type=Path,
                     help="PEM certificate chain for HTTPS metrics (with --metrics-tls-key; default: the --tls-cert pair if given)")
    net.add_argument("--metrics-tls-key", type=Path, help="PEM private key of --metrics-tls-cert")
    net.add_argument("--http-port", type=int, default=None,
                     help="also serve the HTTP/JSON API and the web page on this port (0 = any free port; default: none)")
    net.add_argument("--http-host", default=None, help="HTTP listen address (default: --host)")
    net.add_argument("--tls-cert", type=Path, help="PEM certificate chain; with --tls-key enables TLS")
    net.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    net.add_argument("--bundle-key", type=Path, metavar="PUB.pem",
                     help="refuse the bundle unless its manifest.json is signed with this Ed25519 public key")
    auth = net.add_mutually_exclusive_group()
    auth.add_argument("--token-file", type=Path, help="file of accepted bearer tokens, one per line")
    auth.add_argument("--token-env", metavar="VAR", help="environment variable of comma-separated bearer tokens")
    run = parser.add_argument_group("runtime")
    run.add_argument("--backend", default="auto", help="auto, ort-cpu, openvino, ort-cuda or tensorrt (default auto)")
    run.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                     help="default auto: the backend's choice (ort-cpu: int8 when it agrees with fp32)")
    run.add_argument("--max-batch", type=int, default=16, help="largest dynamic batch (default 16)")
    run.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    run.add_argument("--wait-full-batch", action="store_true",
                     help="always wait --max-wait-ms for a batch to fill (default: send a partial batch "
                          "at once when nothing else is being preprocessed)")
    run.add_argument("--max-queue", type=int, default=256,
                     help="queued requests beyond which calls get RESOURCE_EXHAUSTED (default 256)")
    run.add_argument("--preprocess-workers", type=int, default=2,
                     help="threads decoding and preprocessing images (default 2)")
    run.add_argument("--threads", type=int, default=None,
                     help="onnxruntime intra-op threads (default: physical cores)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-message-mb", type=float, default=16.0, help="largest message in MiB (default 16)")
    limits.add_argument("--max-pixels", type=int, default=None,
                        help="largest image in pixels, checked on the header (default: the bundle's limit)")
    limits.add_argument("--decode-memory-mib", type=float, default=None,
                        help="MiB all image decodes in flight may hold together, estimated from each header; "
                             "beyond it a decode waits briefly, then gets RESOURCE_EXHAUSTED; one image may "
                             "need at most min(640, this) MiB (default: 1/8 of the host's memory)")
    limits.add_argument("--max-concurrent-rpcs", type=int, default=512, help="default 512")
    limits.add_argument("--stream-window", type=int, default=16,
                        help="IdentifyStream requests in flight per stream (default 16)")
    limits.add_argument("--landmark-workers", type=int, default=1, help="landmark search threads (default 1)")
    limits.add_argument("--landmark-queue", type=int, default=4,
                        help="landmark requests that may wait for a worker (default 4)")
    limits.add_argument("--landmark-batch", type=int, default=8,
                        help="most waiting optimised landmark searches with the same settings that share one "
                             "optimiser run (default 8; 1 = each alone)")
    limits.add_argument("--landmark-timeout", type=float, default=120.0,
                        help="longest a Landmarks call may take from its arrival, queue included (default 120 s)")
    limits.add_argument("--grace", type=float, default=130.0,
                        help="cap on the seconds in-flight calls may run once the server stops accepting after SIGTERM; "
                             "the wait ends with the last in-flight call, at most at the latest of their deadlines + 1 s "
                             "(default 130: above --landmark-timeout, so no admitted search is cut)")
    limits.add_argument("--drain-delay", type=float, default=2.0,
                        help="after SIGTERM, seconds to keep accepting calls while health is NOT_SERVING "
                             "(let load balancers notice; default 2)")
    limits.add_argument("--no-warmup", action="store_true", help="report SERVING without a warm-up batch")
    parser.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="text (default) or json, one object per line; the same as `denarius --log-format`")


def config_from_args(args: argparse.Namespace):
    """argparse namespace -> ServerConfig (raises ConfigError for bad combinations)."""
    from denarius.serving.server import ServerConfig, load_tokens

    tokens = ()
    if args.token_file is not None or args.token_env is not None:
        tokens = load_tokens(token_file=args.token_file, token_env=args.token_env)
    return ServerConfig(
        bundle=args.bundle, watch_interval_s=args.watch_interval, host=args.host, port=args.port,
        metrics_host=args.metrics_host, metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_tls_cert=args.metrics_tls_cert, metrics_tls_key=args.metrics_tls_key,
        landmark_timeout_s=args.landmark_timeout,
        http_host=args.http_host, http_port=args.http_port,
        backend=args.backend, precision=None if args.precision == "auto" else args.precision, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, eager_dispatch=not args.wait_full_batch,
        preprocess_workers=args.preprocess_workers, threads=args.threads,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024), max_pixels=args.max_pixels,
        decode_memory_bytes=None if args.decode_memory_mib is None else int(args.decode_memory_mib * 1024 * 1024),
        max_concurrent_rpcs=args.max_concurrent_rpcs, stream_window=args.stream_window,
        landmark_workers=args.landmark_workers, landmark_queue=args.landmark_queue, landmark_batch=args.landmark_batch,
        grace_s=args.grace, drain_delay_s=args.drain_delay, tls_cert=args.tls_cert, tls_key=args.tls_key,
        bundle_key=args.bundle_key, tokens=tokens,
        warmup=not args.no_warmup, watchlist=args.watchlist,
    )


def run(args: argparse.Namespace) -> int:
    from denarius.serving.server import serve

    config = config_from_args(args)
    hosts = {config.host} | ({config.http_host or config.host} if config.http_port is not None else set())
    hosts |= {config.metrics_host} if config.metrics_port is not None else set()
    for host in sorted(hosts - {"127.0.0.1", "localhost", "::1"}):
        if not config.tokens:
            log.warning("listening on %s without --token-file/--token-env: anyone who can reach it may call it", host)
    if config.grace_s < config.landmark_timeout_s:
        log.warning("--grace %g s is below --landmark-timeout %g s: a SIGTERM may cut admitted landmark searches",
                    config.grace_s, config.landmark_timeout_s)
    if config.backend in ("auto", "openvino"):
        from denarius.engine.backends.openvino import preload_openvino

        preload_openvino()  # before gRPC's threads start (see preload_openvino)
    return serve(config)
