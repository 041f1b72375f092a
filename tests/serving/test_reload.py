"""Swapping the bundle of a running server without dropping a call (serving/server.py ``reload``).

A model repository ``repo/<version>/`` of copies of the tiny bundle, each with its own
``version`` in manifest.json (the sha256 list covers the model files, not the manifest, and
the tiny bundle is unsigned). Eight client threads call Identify (and one IdentifyStream is
open) while the server swaps: no call fails, and every call that starts after the swap is
answered by the new version; a broken version keeps the old one serving; a landmark search
in flight finishes on the bundle it started on; SIGHUP to a real ``denarius serve`` does the
same.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from denarius.engine.errors import BundleError
from denarius.serving import repository
from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2
from denarius.serving.server import BackgroundServer, ServerConfig

from serving_helpers import coin_png, free_port, metric, scrape, server_config, wait_for_metric

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 8


def publish(source: Path, repo: Path, name: str, *, model_version: str, break_it: bool = False) -> Path:
    """Copy ``source`` to ``repo/name`` with ``model_version`` in its manifest: into a hidden
    folder first, renamed into place at the end, as an operator should (the watcher never
    sees a half-copied bundle). ``break_it`` truncates a model file (its sha256 fails)."""
    staging = repo / f".{name}.partial"
    shutil.copytree(source, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = model_version
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if break_it:
        model = staging / manifest["models"]["ric"]["files"]["fp32"]
        model.write_bytes(model.read_bytes()[:1000])
    staging.rename(repo / name)
    return repo / name


@pytest.fixture
def repo(tiny_bundle, tmp_path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    publish(tiny_bundle, root, "1", model_version="tiny-v1")
    return root


class Clients:
    """``CLIENTS`` threads calling Identify in a loop, plus one IdentifyStream sending a
    request every 20 ms; every answer recorded as (started, ended, model_version)."""

    def __init__(self, port: int):
        self.client = CoinClient(f"127.0.0.1:{port}", timeout=30, retries=0)
        self.stop = threading.Event()
        self.calls: list[list[tuple[float, float, str]]] = [[] for _ in range(CLIENTS)]
        self.stream: list[tuple[int, str]] = []  # (the item's number, model_version)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._unary, args=(i,)) for i in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._stream))

    def _unary(self, i: int) -> None:
        image = coin_png(i)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                answer = self.client.identify(reverse=image, request_id=f"c{i}")
            except grpc.RpcError as error:
                self.errors.append(f"client {i}: {error.code().name}: {error.details()}")
                continue
            self.calls[i].append((started, time.monotonic(), answer.model_version))

    def _stream(self) -> None:
        def requests():
            n = 0
            while not self.stop.is_set():
                yield coins_pb2.IdentifyRequest(request_id=f"s{n}", reverse=coin_png(n % 4))
                n += 1
                time.sleep(0.02)

        try:
            for answer in self.client.identify_stream(requests(), timeout=120):
                if answer.HasField("error"):
                    self.errors.append(f"stream item {answer.request_id}: {answer.error.code_name}: {answer.error.message}")
                else:
                    self.stream.append((int(answer.request_id[1:]), answer.model_version))
        except grpc.RpcError as error:
            self.errors.append(f"stream: {error.code().name}: {error.details()}")

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.client.close()

    def check_swap(self, swapped_at: float, old: str, new: str) -> float:
        """No call failed; each client got ``new`` within 1 s of the swap, and every call that
        started after it was answered by ``new``. Returns the slowest client's delay."""
        assert not self.errors, self.errors[:10]
        delays = []
        for i, calls in enumerate(self.calls):
            assert {version for _, _, version in calls} == {old, new}, (i, {v for *_, v in calls})
            late = [c for c in calls if c[0] > swapped_at and c[2] != new]
            assert not late, f"client {i}: {len(late)} calls started after the swap were answered by {old}"
            first_new = min(ended for _, ended, version in calls if version == new)
            delays.append(first_new - swapped_at)
        assert max(delays) <= 1.0, delays
        # Answers come in completion order; in the order the items were read, old then new.
        versions = [version for _, version in sorted(self.stream)]
        assert versions and versions[0] == old and versions[-1] == new, versions
        assert sorted(versions, key=lambda v: v == new) == versions, "an item read after a new one got the old bundle"
        return max(delays)


def test_versions_in_natural_order_and_only_complete_ones(tiny_bundle, tmp_path):
    assert sorted(["10", "2", "1", "v10", "v2", "2024-02-01", "2024-01-05"], key=repository.version_key) == [
        "1", "2", "10", "2024-01-05", "2024-02-01", "v2", "v10"]
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(BundleError, match="neither a bundle"):
        repository.choose(root)
    for name in ("2", "10", "9"):
        publish(tiny_bundle, root, name, model_version=f"m{name}")
    (root / "11").mkdir()  # being copied: no manifest.json yet
    shutil.copytree(root / "10", root / ".12.partial")  # hidden: a staging folder
    (root / "notes.txt").write_text("not a version")
    choice = repository.choose(root)
    assert (choice.version, choice.path) == ("10", root / "10")
    assert repository.versions(root) == ["2", "9", "10"]
    plain = repository.choose(tiny_bundle)  # a bundle folder is served as it is
    assert plain.version is None and plain.path == tiny_bundle
    with pytest.raises(BundleError, match="not found"):
        repository.choose(tmp_path / "missing")
    with pytest.raises(Exception, match="watch_interval_s"):
        ServerConfig(bundle=root, watch_interval_s=0)


def test_swap_under_eight_clients_drops_nothing(repo, tiny_bundle):
    config = server_config(repo, max_batch=8, max_wait_ms=2.0, http_port=0)
    with BackgroundServer(config) as running, Clients(running.port) as clients:
        assert running.reload(force=False).outcome == "unchanged"  # a poll finds the bundle served
        time.sleep(1.0)
        publish(tiny_bundle, repo, "2", model_version="tiny-v2")
        began = time.monotonic()
        done = running.reload()
        swapped_at = time.monotonic()
        assert done.outcome == "ok" and (done.previous, done.model_version) == ("tiny-v1", "tiny-v2"), done
        assert done.bundle == repo / "2"
        health = clients.client.health("denarius.v1.CoinService")
        info = clients.client.model_info()
        with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/v1/model", timeout=10) as reply:
            http_version = json.loads(reply.read())["version"]
        text = scrape(running.metrics_port)
        time.sleep(1.5)
    delay = clients.check_swap(swapped_at, "tiny-v1", "tiny-v2")
    assert health == "SERVING" and info.version == "tiny-v2" and http_version == "tiny-v2"
    assert metric(text, "denarius_build_info", model_version="tiny-v2") == 1
    assert metric(text, "denarius_build_info", model_version="tiny-v1") == 0
    assert len([line for line in text.splitlines() if line.startswith("denarius_build_info{")]) == 1
    assert metric(text, "denarius_model_reloads_total", outcome="ok") == 1
    assert metric(text, "denarius_model_reloads_total", outcome="failed") == 0
    calls = sum(len(c) for c in clients.calls)
    print(f"swap: load + warm-up {done.load_s:.2f} s, reload() {swapped_at - began:.2f} s; {calls} calls and "
          f"{len(clients.stream)} stream items answered, none failed; every client had tiny-v2 {delay * 1000:.0f} ms "
          "after the switch at the latest")


def test_watched_repository_new_broken_fixed_and_removed_versions(repo, tiny_bundle):
    config = server_config(repo, watch_interval_s=0.1)
    with BackgroundServer(config) as running, CoinClient(f"127.0.0.1:{running.port}", timeout=20, retries=0) as client:
        def serves(version: str, timeout: float = 30) -> float:
            started = time.monotonic()
            while client.identify(reverse=coin_png(0)).model_version != version:
                assert time.monotonic() - started < timeout, f"{version} was not served within {timeout} s"
                time.sleep(0.02)
            return time.monotonic() - started

        assert client.model_info().version == "tiny-v1"
        publish(tiny_bundle, repo, "2", model_version="tiny-v2")
        took = serves("tiny-v2")
        # A broken version: logged, counted once (not retried while it is unchanged), the old one serves.
        broken = publish(tiny_bundle, repo, "3", model_version="tiny-v3", break_it=True)
        assert wait_for_metric(running.metrics_port, "denarius_model_reloads_total", lambda v: v == 1,
                               timeout=30, outcome="failed") == 1
        time.sleep(0.5)
        assert metric(scrape(running.metrics_port), "denarius_model_reloads_total", outcome="failed") == 1
        assert client.model_info().version == "tiny-v2" and client.health() == "SERVING"
        # Fixed in place: tried again, served.
        manifest = json.loads((broken / "manifest.json").read_text())
        shutil.copy(tiny_bundle / manifest["models"]["ric"]["files"]["fp32"], broken / manifest["models"]["ric"]["files"]["fp32"])
        serves("tiny-v3")
        # Removed: the highest is 2 again (a rollback).
        shutil.rmtree(broken)
        serves("tiny-v2")
        text = scrape(running.metrics_port)
        assert metric(text, "denarius_model_reloads_total", outcome="ok") == 3
        assert metric(text, "denarius_model_reloads_total", outcome="failed") == 1
    print(f"watch every 0.1 s: a new version was served {took:.2f} s after it was renamed into the repository")


def test_a_plain_bundle_folder_reloads_in_place(tiny_bundle, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    with BackgroundServer(server_config(folder, watch_interval_s=0.1)) as running, \
            CoinClient(f"127.0.0.1:{running.port}", timeout=20, retries=0) as client:
        again = running.reload()  # SIGHUP on a bundle folder: the same folder, read again
        assert again.outcome == "ok" and again.model_version == again.previous == "tiny-test", again
        # export rewrites manifest.json atomically (a new file renamed over the old): the watcher sees it.
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["version"] = "tiny-rewritten"
        (folder / "manifest.json.new").write_text(json.dumps(manifest))
        os.replace(folder / "manifest.json.new", folder / "manifest.json")
        deadline = time.monotonic() + 30
        while client.identify(reverse=coin_png(2)).model_version != "tiny-rewritten":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert metric(scrape(running.metrics_port), "denarius_model_reloads_total", outcome="ok") == 2


def test_broken_bundle_keeps_the_old_one_serving(repo, tiny_bundle):
    with BackgroundServer(server_config(repo)) as running, CoinClient(f"127.0.0.1:{running.port}", timeout=20, retries=0) as client:
        publish(tiny_bundle, repo, "2", model_version="tiny-v2", break_it=True)
        failed = running.reload()
        assert failed.outcome == "failed" and "sha256" in failed.error and failed.model_version == "tiny-v1", failed
        assert client.identify(reverse=coin_png(1)).model_version == "tiny-v1"
        assert client.health("denarius.v1.CoinService") == "SERVING"
        # A repository emptied of every version: nothing to load, the old one goes on.
        for version in ("1", "2"):
            shutil.rmtree(repo / version)
        assert running.reload().outcome == "failed"
        assert client.identify(reverse=coin_png(1)).model_version == "tiny-v1"
        assert metric(scrape(running.metrics_port), "denarius_model_reloads_total", outcome="failed") == 2


def test_landmark_searches_in_flight_finish_on_the_old_bundle(repo, tiny_bundle):
    # One worker, one search per run: one search running and two queued on the old bundle's
    # landmark batcher when the swap happens.
    config = server_config(repo, landmark_workers=1, landmark_batch=1)
    with BackgroundServer(config) as running, CoinClient(f"127.0.0.1:{running.port}", timeout=120, retries=0) as client:
        answers: dict = {}

        def search(i: int) -> None:
            try:  # occlusion over 61 x 61 windows: ~3,700 forward passes, a second or more each
                answers[i] = client.landmarks(coin_png(i, size=96), side="reverse", method="occlusion", window=4, stride=1)
            except grpc.RpcError as error:
                answers[i] = f"{error.code().name}: {error.details()}"

        threads = [threading.Thread(target=search, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        assert wait_for_metric(running.metrics_port, "denarius_inflight_requests", lambda v: v == 3,
                               timeout=30, method="Landmarks") == 3
        publish(tiny_bundle, repo, "2", model_version="tiny-v2")
        done = running.reload()
        assert done.outcome == "ok", done
        still_running = sum(thread.is_alive() for thread in threads)
        open_during = metric(scrape(running.metrics_port), "denarius_model_runtimes")
        assert client.identify(reverse=coin_png(1)).model_version == "tiny-v2"
        for thread in threads:
            thread.join(timeout=120)
        failed = {i: a for i, a in answers.items() if isinstance(a, str)}
        assert not failed and len(answers) == 3, failed
        assert all(a.model_version == "tiny-v1" and a.regions for a in answers.values())
        # The old bundle closes once its last request is done.
        assert wait_for_metric(running.metrics_port, "denarius_model_runtimes", lambda v: v == 1, timeout=30) == 1
        # A search started now runs on the new bundle.
        assert client.landmarks(coin_png(3), side="reverse", method="saliency").model_version == "tiny-v2"
    assert still_running, "the searches finished before the swap: nothing was in flight"
    assert open_during == 2
    print(f"{still_running} of 3 landmark searches were still in flight after the swap; all answered by tiny-v1")


def test_sighup_swaps_a_real_serve_process(repo, tiny_bundle, tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "denarius.apps.cli", "serve", str(repo), "--port", str(port),
               "--metrics-port", "-1", "--backend", "ort-cpu", "--precision", "fp32", "--drain-delay", "0"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with CoinClient(f"127.0.0.1:{port}", timeout=5, retries=0) as probe:
            probe.wait_until_serving(timeout=90)
        assert "version 1, the highest" in log_path.read_text()
        with Clients(port) as clients:
            time.sleep(1.0)
            publish(tiny_bundle, repo, "2", model_version="tiny-v2")
            signalled = time.monotonic()
            os.kill(process.pid, signal.SIGHUP)
            while "reloaded: serving version tiny-v2" not in log_path.read_text():
                assert process.poll() is None and time.monotonic() - signalled < 60, log_path.read_text()
                time.sleep(0.01)
            swapped_at = time.monotonic()  # the log line is written right after the switch
            time.sleep(1.5)
            info = clients.client.model_info()
        delay = clients.check_swap(swapped_at, "tiny-v1", "tiny-v2")
        assert info.version == "tiny-v2" and process.poll() is None
        first_new = min(ended for calls in clients.calls for _, ended, version in calls if version == "tiny-v2")
        print(f"SIGHUP -> first tiny-v2 answer {first_new - signalled:.2f} s; every client within "
              f"{max(delay, 0) * 1000:.0f} ms of the switch (logged); no call failed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log_path.read_text()
    assert "SIGHUP received: reloading the bundle" in text and "closed" in text and "Traceback" not in text, text
