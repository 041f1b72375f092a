"""Peak RSS of ``denarius serve`` answering memory-bomb images, sampled from /proc.

Starts the real server as a subprocess on a loopback port, then for each concurrency in
``--concurrency`` sends that many Identify calls at once, each with the same image as its
obverse, and reports the server's RSS before, its peak (VmHWM, reset between rounds through
/proc/PID/clear_refs) and the status codes::

    python tests/soak/bomb_rss.py --bundle BUNDLE [--image FILE] [--concurrency 1 6] \
        [--decode-memory-mib 1024] [--json OUT]

Without ``--image`` it makes the issue's 6,324 x 6,324 RGBA 16-bit PNG (tests/fuzz/hostile.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

from denarius.serving.client import CoinClient

MIB = 1024 * 1024


def proc_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM). Raises OSError when the process is
    gone, LookupError when it has no such line (a zombie has no VmRSS)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    if match is None:
        raise LookupError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


def start_server(command: list[str], bundle: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    args = [*command, "serve", str(bundle), "--port", "0", "--metrics-port", "-1", "--backend", "ort-cpu", *extra]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr
    assert stderr is not None  # stderr=PIPE
    deadline = time.monotonic() + 120
    for line in stderr:
        match = re.search(r"ready: port=(\d+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()  # keep draining
            return process, int(match.group(1))
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError(f"server did not start: {' '.join(args)}")


def one_round(port: int, pid: int, image: bytes, concurrency: int, timeout: float) -> dict:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = proc_kib(pid, "VmRSS")
    codes: Counter = Counter()
    started = time.perf_counter()

    def call(_):
        with CoinClient(f"127.0.0.1:{port}", timeout=timeout, retries=0) as client:
            try:
                client.identify(obverse=image)
                return "OK"
            except grpc.RpcError as error:
                return error.code().name

    with ThreadPoolExecutor(concurrency) as pool:
        for code in pool.map(call, range(concurrency)):
            codes[code] += 1
    return {"concurrency": concurrency, "rss_before_mib": before / 1024, "peak_rss_mib": proc_kib(pid, "VmHWM") / 1024,
            "codes": dict(codes), "wall_s": round(time.perf_counter() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, help="image to send (default: the issue's 40 Mpx RGBA 16-bit PNG)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--decode-memory-mib", type=float, help="passed to denarius serve")
    parser.add_argument("--server-command", default=f"{shlex.quote(sys.executable)} -m denarius.apps.cli",
                        help="how to run the CLI (default: this Python's denarius.apps.cli)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the rounds here")
    args = parser.parse_args(argv)
    if args.image is not None:
        image = args.image.read_bytes()
    else:
        from hostile import big_rgba16_png

        image = big_rgba16_png()
    extra = [] if args.decode_memory_mib is None else ["--decode-memory-mib", str(args.decode_memory_mib)]
    process, port = start_server(shlex.split(args.server_command), args.bundle, extra)
    try:
        rounds = [one_round(port, process.pid, image, n, args.timeout) for n in args.concurrency]
    finally:
        process.terminate()
        process.wait(timeout=30)
    report = {"image_bytes": len(image), "cpus": os.cpu_count(), "rounds": rounds}
    for r in rounds:
        print(f"{r['concurrency']:>3} at once: RSS {r['rss_before_mib']:.0f} -> peak {r['peak_rss_mib']:.0f} MiB, "
              f"{r['wall_s']} s, {r['codes']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
