"""Soak and fault test of ``denarius serve``: many loopback clients, hostile traffic, a SIGTERM.

Starts the real server as a subprocess on a loopback port, then ``--clients`` threads (each
with its own channel) send for ``--seconds`` a mix of

- ``good``: an Identify with a coin pair (JPEG + PNG), expected OK;
- ``hostile``: a good obverse and one of the hostile seed files of tests/fuzz/hostile.py as
  reverse (truncations, lying headers, pixel bombs, 16-bit, float TIFF, text, ...);
- ``bomb``: the issue's 6,324 x 6,324 RGBA 16-bit PNG (40 Mpx, 320 MB of samples), OK
  or RESOURCE_EXHAUSTED when the decode memory budget is in use;
- ``malformed``: wire bytes that are not an IdentifyRequest, expected INVALID_ARGUMENT;
- ``stream``: an IdentifyStream of good, hostile and malformed items, read to the end;
- ``cancelled_stream``: a long IdentifyStream the client cancels after 20-300 ms;
- ``deadline``: an Identify with a 2-20 ms deadline.

The server's RSS (VmRSS every 100 ms, and its VmHWM peak) is read from /proc/PID/status.
Then the server gets a SIGTERM while the clients keep sending: it must answer every call it
accepted (those started before its drain delay ran out, and any it answered), refuse the
later ones (UNAVAILABLE, connection refused; or CANCELLED by gRPC, unanswered, for a call
that reached the port as it closed) and exit 0. The report gives the status codes
by kind, p50/p99 latency by kind, the peak RSS against the decode budget + the model size,
the RSS drift over the load, the server's own request counts (its last /metrics scrape) and
the drain. The exit status is 1 when a check fails::

    python tests/soak/soak.py --bundle BUNDLE [--seconds 120] [--clients 16] \\
        [--decode-memory-mib 1024] [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fuzz"))
sys.path.insert(0, str(HERE))

from bomb_rss import proc_kib  # noqa: E402
from hostile import big_rgba16_png, coin_bgr, seed_files  # noqa: E402

from denarius.serving.denarius.v1 import coins_pb2  # noqa: E402

MIB = 1024 * 1024
SERVICE = "/denarius.v1.CoinService/"
ALLOWED = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED"}
MIX = {"good": 30, "hostile": 20, "bomb": 6, "malformed": 12, "stream": 10, "cancelled_stream": 10, "deadline": 12}
CLOSE_MARGIN_S = 0.25  # calls that start this close to the end of the drain delay may meet the closed port
MALFORMED = (b"\x0a\x03\xff\xfe\xfd", b"\x12\x10abc", bytes(range(256)), b"\xff" * 12, b"\x1a\xff\xff\xff\xff\x0f")


@dataclass
class Call:
    kind: str
    client: int
    start: float  # time.monotonic()
    end: float = 0.0
    code: str = ""
    details: str = ""
    sent: int = 1  # stream items sent (1 for unary)
    answered: int = 0  # responses received


@dataclass
class Traffic:
    """The payloads every client draws from (built once)."""

    good: list[bytes]
    hostile: list[bytes]
    bomb: bytes
    stream_items: list[bytes] = field(default_factory=list)


def build_traffic(*, bomb_side: int, cache: Path) -> Traffic:
    rng = random.Random(0)
    good = []
    for side in (160, 240, 320, 400):
        image = coin_bgr(side)
        for ext in (".jpg", ".png"):
            ok, data = cv2.imencode(ext, image)
            assert ok
            good.append(data.tobytes())
    hostile = [data for name, data in sorted(seed_files().items()) if not name.startswith("coin")]
    cache.mkdir(parents=True, exist_ok=True)
    bomb_path = cache / f"bomb_rgba16_{bomb_side}.png"
    if not bomb_path.is_file():
        bomb_path.write_bytes(big_rgba16_png(bomb_side))
    items = [coins_pb2.IdentifyRequest(request_id=f"item-{i}", obverse=rng.choice(good),
                                       reverse=rng.choice(good + hostile)).SerializeToString() for i in range(6)]
    items.append(MALFORMED[1])
    return Traffic(good=good, hostile=hostile, bomb=bomb_path.read_bytes(), stream_items=items)


def start_server(command: list[str], bundle: Path, extra: list[str], log_path: Path) -> tuple[subprocess.Popen, int, int]:
    """The server process, its gRPC port and its metrics port (read from its log)."""
    args = [*command, "serve", str(bundle), "--port", "0", "--metrics-port", "0", "--backend", "ort-cpu", *extra]
    with open(log_path, "w") as log:  # the child keeps its own copy of the file descriptor
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        match = re.search(r"ready: port=(\d+) metrics_port=(\d+)", log_path.read_text())
        if match:
            return process, int(match.group(1)), int(match.group(2))
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {shlex.join(args)}\n{log_path.read_text()[-3000:]}")


class Sampler(threading.Thread):
    """VmRSS every ``every`` s and the last VmHWM of a process, until it exits."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS KiB)
        self.hwm_kib = 0

    def run(self) -> None:
        while True:
            try:
                rss, hwm = proc_kib(self.pid, "VmRSS"), proc_kib(self.pid, "VmHWM")
            except (OSError, LookupError):  # gone, or a zombie (no VmRSS line)
                return
            self.samples.append((time.monotonic(), rss))
            self.hwm_kib = max(self.hwm_kib, hwm)
            time.sleep(self.every)


class Scraper(threading.Thread):
    """The server's /metrics, every second; keeps the last text it got."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.url, self.text, self.stop = f"http://127.0.0.1:{port}/metrics", "", threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.scrape()
            self.stop.wait(1.0)

    def scrape(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as reply:
                self.text = reply.read().decode()
        except OSError:
            pass


def server_counts(text: str) -> dict[str, dict[str, int]]:
    """{method: {code: n}} of denarius_requests_total in a /metrics text."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for line in text.splitlines():
        match = re.match(r'denarius_requests_total\{(.*)\}\s+(\S+)', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            counts[labels["method"]][labels["code"]] = int(float(match.group(2)))
    return dict(counts)


def _code(error: grpc.RpcError) -> tuple[str, str]:
    return error.code().name, error.details() or ""


def one_call(kind: str, client: int, rng: random.Random, channel: grpc.Channel, traffic: Traffic, timeout: float) -> Call:
    call = Call(kind=kind, client=client, start=time.monotonic())
    identify = channel.unary_unary(SERVICE + "Identify")
    stream = channel.stream_stream(SERVICE + "IdentifyStream", response_deserializer=coins_pb2.IdentifyResponse.FromString)
    try:
        if kind in ("good", "hostile", "bomb", "deadline"):
            request = coins_pb2.IdentifyRequest(request_id=f"c{client}-{kind}", obverse=rng.choice(traffic.good))
            if kind == "hostile":
                request.reverse = rng.choice(traffic.hostile)
            elif kind == "bomb":
                request.ClearField("obverse")
                request.reverse = traffic.bomb
            else:
                request.reverse = rng.choice(traffic.good)
            identify(request.SerializeToString(), timeout=rng.uniform(0.002, 0.02) if kind == "deadline" else timeout)
            call.answered = 1
        elif kind == "malformed":
            identify(rng.choice(MALFORMED), timeout=timeout)
            call.answered = 1
        elif kind == "stream":
            items = rng.sample(traffic.stream_items, k=len(traffic.stream_items))
            call.sent = len(items)
            for _ in stream(iter(items), timeout=timeout):
                call.answered += 1
        else:  # cancelled_stream: more than the server can answer before the client gives up
            items = [rng.choice(traffic.stream_items) for _ in range(64)]
            call.sent = len(items)
            responses = stream(iter(items), timeout=timeout)
            cancel = threading.Timer(rng.uniform(0.02, 0.3), responses.cancel)
            cancel.start()
            try:
                for _ in responses:
                    call.answered += 1
            finally:
                cancel.cancel()
        call.code = "OK"
    except grpc.RpcError as error:
        call.code, call.details = _code(error)
    call.end = time.monotonic()
    return call


def refused(call: Call) -> bool:
    """An UNAVAILABLE from a port that no longer accepts (after the drain): not a lost call."""
    text = call.details.lower()
    return call.code == "UNAVAILABLE" and ("connect" in text or "connection refused" in text)


def client_loop(index: int, *, target: str, traffic: Traffic, mix: dict[str, int], stop: threading.Event,
                calls: list[Call], lock: threading.Lock, timeout: float, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    kinds, weights = list(mix), list(mix.values())
    options = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
    with grpc.insecure_channel(target, options=options) as channel:
        while not stop.is_set():
            call = one_call(rng.choices(kinds, weights)[0], index, rng, channel, traffic, timeout)
            with lock:
                calls.append(call)
            if refused(call):
                return  # the server has closed its port: this client is done


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _relative(call: Call, sigterm_at: float) -> dict:
    """A call for the report, its times in seconds from the SIGTERM."""
    return vars(call) | {"start": round(call.start - sigterm_at, 3), "end": round(call.end - sigterm_at, 3)}


def summarise(calls: list[Call], *, load_end: float, sigterm_at: float, accept_until: float) -> dict:
    """Codes and latency by kind over the load; the drain's answered / refused / lost calls."""
    by_kind: dict[str, Counter] = defaultdict(Counter)
    latency: dict[str, list[float]] = defaultdict(list)
    lost: list[Call] = []
    unexpected: list[Call] = []
    drain: Counter[str] = Counter()
    for call in calls:
        by_kind[call.kind][call.code] += 1
        if call.end <= load_end:
            latency[call.kind].append(1000 * (call.end - call.start))
        client_cancel = call.kind == "cancelled_stream" and call.code == "CANCELLED"
        short_stream = call.kind == "stream" and call.code == "OK" and call.answered != call.sent
        # A call that reaches the port as it closes is cancelled by gRPC before any handler runs.
        cut_unanswered = call.code in ("CANCELLED", "UNAVAILABLE") and not client_cancel and call.answered == 0
        if call.start >= sigterm_at and (refused(call) or cut_unanswered):
            if call.start < accept_until - CLOSE_MARGIN_S:
                lost.append(call)  # the server was still accepting then
            else:
                drain["refused after the port closed"] += 1
            continue
        if call.code not in ALLOWED or short_stream or (call.code == "CANCELLED" and not client_cancel):
            (lost if call.end >= sigterm_at else unexpected).append(call)
        elif call.start < sigterm_at <= call.end:
            drain["in flight at SIGTERM, answered"] += 1
        elif call.start >= sigterm_at:
            drain["started after SIGTERM, answered"] += 1
    every = [ms for values in latency.values() for ms in values]
    return {
        "codes_by_kind": {kind: dict(sorted(codes.items())) for kind, codes in sorted(by_kind.items())},
        "latency_ms_by_kind": {kind: {"n": len(v), "p50": round(percentile(v, 50), 1), "p99": round(percentile(v, 99), 1)}
                               for kind, v in sorted(latency.items())},
        "latency_ms_all": {"p50": round(percentile(every, 50), 1), "p99": round(percentile(every, 99), 1)},
        "drain": dict(drain),
        "lost": [_relative(c, sigterm_at) for c in lost[:20]], "lost_count": len(lost),
        "unexpected": [_relative(c, sigterm_at) for c in unexpected[:20]], "unexpected_count": len(unexpected),
    }


def rss_summary(sampler: Sampler, *, load_start: float, load_end: float, budget_mib: float, model_mib: float,
                ready_kib: int) -> dict:
    """Peak RSS (VmHWM) against budget + model; drift = last fifth of the load minus the first."""
    load = [(t, kib / 1024) for t, kib in sampler.samples if load_start <= t <= load_end]
    fifth = max(1, len(load) // 5)
    first, last = [v for _, v in load[:fifth]], [v for _, v in load[-fifth:]]
    peak = sampler.hwm_kib / 1024
    return {
        "ready_mib": round(ready_kib / 1024, 1), "peak_mib": round(peak, 1),
        "decode_budget_mib": budget_mib, "model_mib": round(model_mib, 1),
        "limit_mib": round(budget_mib + model_mib, 1), "under_limit": peak < budget_mib + model_mib,
        "peak_over_ready_mib": round(peak - ready_kib / 1024, 1),
        "drift_median_mib": round(statistics.median(last) - statistics.median(first), 1) if load else None,
        "drift_min_mib": round(min(last) - min(first), 1) if load else None,
        "samples": len(load),
    }


def run_soak(args: argparse.Namespace) -> dict:
    traffic = build_traffic(bomb_side=args.bomb_side, cache=args.cache)
    budget_mib = args.decode_memory_mib
    extra = ["--decode-memory-mib", str(budget_mib), "--grace", str(args.grace), "--drain-delay", str(args.drain_delay),
             *shlex.split(args.server_args)]
    workdir = Path(tempfile.mkdtemp(prefix="denarius-soak-"))
    log_path = workdir / "server.log"
    process, port, metrics_port = start_server(shlex.split(args.server_command), args.bundle, extra, log_path)
    ready_kib = proc_kib(process.pid, "VmRSS")
    sampler, scraper = Sampler(process.pid), Scraper(metrics_port)
    sampler.start()
    scraper.start()
    calls: list[Call] = []
    lock, stop = threading.Lock(), threading.Event()
    mix = dict(MIX)
    for item in args.mix or ():
        name, _, weight = item.partition("=")
        if name not in MIX:
            raise SystemExit(f"unknown kind {name!r} in --mix; kinds: {', '.join(MIX)}")
        mix[name] = int(weight)
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True, kwargs=dict(
        target=f"127.0.0.1:{port}", traffic=traffic, mix=mix, stop=stop, calls=calls, lock=lock,
        timeout=args.timeout, seed=args.seed)) for i in range(args.clients)]
    load_start = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(args.seconds)
        load_end = time.monotonic()
        scraper.stop.set()
        scraper.join()
        scraper.scrape()  # the counts just before the SIGTERM
        hwm_before_sigterm = proc_kib(process.pid, "VmHWM")
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=args.drain_delay + args.grace + 60)
        except subprocess.TimeoutExpired:
            exit_code = None
        exited_at = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(timeout=args.timeout + 5)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    log_text = log_path.read_text()
    server_metrics = server_counts(scraper.text)
    report = {
        "config": {"seconds": args.seconds, "clients": args.clients, "mix": mix, "bomb_bytes": len(traffic.bomb),
                   "bomb_side": args.bomb_side, "decode_memory_mib": budget_mib, "grace_s": args.grace,
                   "drain_delay_s": args.drain_delay, "cpus": os.cpu_count(), "bundle": str(args.bundle)},
        "calls": len(calls),
        **summarise(calls, load_end=load_end, sigterm_at=sigterm_at, accept_until=sigterm_at + args.drain_delay),
        "rss": rss_summary(sampler, load_start=load_start + min(5.0, args.seconds / 5), load_end=load_end,
                           budget_mib=budget_mib, model_mib=model_mib(args.bundle), ready_kib=ready_kib)
        | {"peak_mib_before_sigterm": round(hwm_before_sigterm / 1024, 1)},
        "server_requests_before_sigterm": server_metrics,
        "server_unknown_or_internal": sum(n for codes in server_metrics.values()
                                          for code, n in codes.items() if code in ("UNKNOWN", "INTERNAL")),
        "server_exit_code": exit_code,
        "drain_s": round(exited_at - sigterm_at, 2),
        "server_log_errors": [line for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line][:20],
        "server_log": str(log_path),
    }
    report["passed"] = passed(report)
    return report


def model_mib(bundle: Path) -> float:
    """The bundle's ONNX files (the classifiers and, loaded on first use, the gradient graphs)."""
    return sum(p.stat().st_size for p in bundle.glob("*.onnx")) / MIB


def passed(report: dict) -> bool:
    return (report["lost_count"] == 0 and report["unexpected_count"] == 0 and report["server_exit_code"] == 0
            and report["server_unknown_or_internal"] == 0 and report["rss"]["under_limit"]
            and not report["server_log_errors"])


def print_report(report: dict) -> None:
    print(f"{report['calls']} calls from {report['config']['clients']} clients in {report['config']['seconds']} s")
    for kind, codes in report["codes_by_kind"].items():
        lat = report["latency_ms_by_kind"].get(kind, {})
        print(f"  {kind:<17} p50 {lat.get('p50', float('nan')):>8.1f} ms  p99 {lat.get('p99', float('nan')):>8.1f} ms  {codes}")
    rss = report["rss"]
    print(f"RSS: ready {rss['ready_mib']} MiB, peak {rss['peak_mib']} MiB (limit budget {rss['decode_budget_mib']} + "
          f"model {rss['model_mib']} = {rss['limit_mib']} MiB), drift {rss['drift_median_mib']} MiB (median), "
          f"{rss['drift_min_mib']} MiB (floor)")
    print(f"drain: {report['drain']}, exit {report['server_exit_code']} after {report['drain_s']} s, "
          f"lost {report['lost_count']}, unexpected {report['unexpected_count']}")
    print(f"server counts: {report['server_requests_before_sigterm']}")
    print("PASSED" if report["passed"] else "FAILED")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle directory")
    parser.add_argument("--seconds", type=float, default=120.0, help="load before the SIGTERM (default 120)")
    parser.add_argument("--clients", type=int, default=16, help="client threads, one channel each (default 16)")
    parser.add_argument("--decode-memory-mib", type=float, default=1024.0, help="the server's decode budget (default 1024)")
    parser.add_argument("--bomb-side", type=int, default=6324, help="side of the RGBA 16-bit PNG bomb (default 6324: 40 Mpx)")
    parser.add_argument("--mix", nargs="*", metavar="KIND=WEIGHT", help=f"change the mix (default {MIX})")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each call but 'deadline' (default 60)")
    parser.add_argument("--grace", type=float, default=75.0,
                        help="the server's --grace (default 75: above --timeout, so a drain need cut no call)")
    parser.add_argument("--drain-delay", type=float, default=1.0, help="the server's --drain-delay (default 1)")
    parser.add_argument("--server-args", default="", help="more `denarius serve` flags")
    parser.add_argument("--server-command", default=f"{shlex.quote(sys.executable)} -m denarius.apps.cli",
                        help="how to run the CLI (default: this Python's denarius.apps.cli)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "denarius-soak",
                        help="where the generated bomb PNG is kept between runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_soak(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
