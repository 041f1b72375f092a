"""Request ids and client text cannot forge or flood the server's log; JSON logs.

Through a real server on loopback: the log is what the CLI's formatter writes (set on
caplog's handler), or a real ``denarius serve --log-format json`` process's stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2
from denarius.serving.logs import (
    MAX_REQUEST_ID_CHARS,
    JsonFormatter,
    TextFormatter,
    check_request_id,
    current_request_id,
    escape,
    preview,
)

from serving_helpers import coin_png, free_port

REPO = Path(__file__).resolve().parents[2]
FORGED = "abc\n2026-01-01 00:00:00,000 INFO denarius.serving.server: \x1b[32mstopped\x1b[0m"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


@pytest.fixture
def server_log(caplog):
    """The server's log as `denarius serve` formats it (INFO and up)."""
    caplog.set_level(logging.INFO)
    caplog.handler.setFormatter(TextFormatter())
    return caplog


def _lines_are_records(text: str) -> None:
    """Every line is a record of its own or an indented traceback line; nothing raw."""
    assert "\x1b" not in text and "\r" not in text
    for line in text.splitlines():
        assert LINE_START.match(line) or line.startswith("    "), repr(line)


def test_a_forged_line_in_a_request_id_is_refused_and_logged_escaped(server, client, server_log):
    with pytest.raises(grpc.RpcError) as caught:
        client.identify(reverse=coin_png(1), request_id=FORGED)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id holds a non-printable character (\\n) at position 3" in caught.value.details()
    _lines_are_records(server_log.text)
    [line] = [line for line in server_log.text.splitlines() if "request_id holds" in line]
    assert line.endswith(f"(offered: {preview(FORGED)})")
    assert preview(FORGED) == "'abc\\n2026-01-01 00:00:00,000 INFO denariu...' (74 characters)"
    assert not any(line.startswith("2026-01-01") for line in server_log.text.splitlines())


def test_huge_request_ids_do_not_grow_the_log(server, client, server_log):
    huge = "x" * (1024 * 1024)
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as caught:
            client.identify(reverse=coin_png(2), request_id=huge)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "request_id is 1048576 characters long; at most 128 are allowed"
    assert len(server_log.text) < 5 * 400, len(server_log.text)  # 5 MiB of ids, under 2 kB of log
    assert server_log.text.count("(1048576 characters)") == 5


def test_request_id_limits(server, client):
    longest = "r" * MAX_REQUEST_ID_CHARS
    assert client.identify(reverse=coin_png(3), request_id=longest).request_id == longest
    assert client.identify(reverse=coin_png(3), request_id="Münze 7/ħ-ü").request_id == "Münze 7/ħ-ü"
    for bad, words in ((longest + "r", "129 characters long"), ("tab\there", "(\\t) at position 3"),
                       ("bidi\u202eevil", "(\\u202e) at position 4"), ("nul\x00", "(\\x00) at position 3")):
        with pytest.raises(grpc.RpcError) as caught:
            client.identify(reverse=coin_png(3), request_id=bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:  # Landmarks checks its id the same way
        client.landmarks(coin_png(3), side="reverse", max_iterations=2, request_id=FORGED)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_bad_id_in_a_stream_is_an_error_item_with_the_id_sent(server, client, server_log):
    ids = ["ok-0", FORGED, "ok-1", "y" * 4000]
    answers = list(client.identify_stream(coins_pb2.IdentifyRequest(request_id=rid, reverse=coin_png(i))
                                          for i, rid in enumerate(ids)))
    by_id = {answer.request_id: answer for answer in answers}
    assert set(by_id) == set(ids)
    assert not by_id["ok-0"].HasField("error") and not by_id["ok-1"].HasField("error")
    assert by_id[FORGED].error.code_name == "INVALID_ARGUMENT" and "position 3" in by_id[FORGED].error.message
    assert "4000 characters long" in by_id["y" * 4000].error.message
    _lines_are_records(server_log.text)
    assert len(server_log.text) < 2000


def test_client_text_in_an_error_message_is_escaped(server, client, server_log):
    with pytest.raises(grpc.RpcError) as caught:  # the unknown target label is quoted in the message
        client.landmarks(coin_png(4), side="reverse", max_iterations=2, target="Probus\n\x1b[31mFORGED")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FORGED" in server_log.text
    _lines_are_records(server_log.text)


def test_escape_and_preview():
    assert escape("plain id-1 ü") == "plain id-1 ü"
    assert escape("a\nb\x1b[0m\u2028\u202e\t") == "a\\nb\\x1b[0m\\u2028\\u202e\\t"
    assert preview("a\nb") == "'a\\nb'"
    assert preview("z" * 100, limit=4) == "'zzzz...' (100 characters)"
    assert check_request_id("fine") == "fine"


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("denarius.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_text_formatter_escapes_messages_and_indents_tracebacks():
    try:
        raise ValueError("boom\nFORGED LINE")
    except ValueError:
        exc_info = sys.exc_info()
    text = TextFormatter().format(_record("request %s: %s", "r1", "x\ny", exc_info=exc_info))
    first, *rest = text.splitlines()
    assert first.endswith("ERROR denarius.test: request r1: x\\ny")
    assert rest and all(line.startswith("    ") for line in rest)
    assert "    ValueError: boom" in rest and "    FORGED LINE" in rest


def test_json_formatter_one_object_per_line():
    token = current_request_id.set("rid-42")
    try:
        try:
            raise KeyError("k")
        except KeyError:
            line = JsonFormatter().format(_record("bad %s", "a\nb\x1b", exc_info=sys.exc_info()))
    finally:
        current_request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "bad a\nb\x1b" and entry["request_id"] == "rid-42"
    assert entry["level"] == "ERROR" and entry["logger"] == "denarius.test"
    assert entry["time"].endswith("+00:00") and "KeyError" in entry["exception"]
    assert "request_id" not in json.loads(JsonFormatter().format(_record("no call")))


def test_serve_log_format_json(tiny_bundle, tmp_path):
    """A real `denarius serve --log-format json`: every stderr line is one JSON object, and a
    call's lines carry its request id."""
    port = free_port()
    command = [sys.executable, "-m", "denarius.apps.cli", "serve", str(tiny_bundle), "--port", str(port),
               "--metrics-port", "-1", "--backend", "ort-cpu", "--precision", "fp32", "--drain-delay", "0",
               "--no-warmup", "--log-format", "json"]
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while '"ready: port=' not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        with CoinClient(f"127.0.0.1:{port}", timeout=20, retries=0) as client:
            with pytest.raises(grpc.RpcError):
                client.identify(reverse=b"not an image at all", request_id="json-rid-1")
            with pytest.raises(grpc.RpcError):
                client.identify(reverse=coin_png(5), request_id=FORGED)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    [failed] = [e for e in entries if "INVALID_ARGUMENT" in e["message"] and e.get("request_id") == "json-rid-1"]
    assert failed["logger"] == "denarius.serving.servicer" and failed["level"] == "INFO"
    [refused] = [e for e in entries if "request_id holds" in e["message"]]
    assert refused["request_id"] != FORGED and FORGED[:20] not in refused["message"]
    assert any(e["message"].startswith("stopped") for e in entries)


def test_the_http_api_checks_request_ids_the_same_way(tiny_bundle, server_log):
    requests = pytest.importorskip("requests")
    pytest.importorskip("fastapi")
    from denarius.serving.server import BackgroundServer

    from serving_helpers import server_config

    with BackgroundServer(server_config(tiny_bundle, http_port=0, warmup=False)) as running:
        url = f"http://127.0.0.1:{running.http_port}/v1/identify"
        for bad, words in ((FORGED, "position 3"), ("z" * (1024 * 1024), "1048576 characters long")):
            reply = requests.post(url, json={"request_id": bad, "reverse": ""}, timeout=30)
            assert reply.status_code == 400 and words in reply.json()["error"]["message"]
        ok = requests.post(url, files={"reverse": ("r.png", coin_png(6))}, data={"request_id": "web-ok"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["request_id"] == "web-ok"
    _lines_are_records(server_log.text)
    assert len(server_log.text) < 4000


def test_an_answer_to_a_call_that_had_ended_is_one_warning_line_not_an_error(caplog):
    from grpc._cython.cygrpc import ExecuteBatchError

    from denarius.serving.interceptors import quiet_undeliverable_answers

    quiet_undeliverable_answers()
    quiet_undeliverable_answers()  # idempotent: one filter
    core = logging.getLogger("grpc._cython.cygrpc")
    assert len(core.filters) == 1
    caplog.set_level(logging.INFO)
    try:
        raise ExecuteBatchError('Failed "execute_batch": (SendMessageOperation,)')
    except ExecuteBatchError:  # what gRPC's core logs when the send fails
        core.exception("ExecuteBatchError raised in core by servicer method [%s]", "/denarius.v1.CoinService/Identify")
    core.error("some other core failure")
    first, other = caplog.records[-2:]
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert first.getMessage() == ("an answer to /denarius.v1.CoinService/Identify was not sent: "
                                  "the call had ended (deadline passed or client gone)")
    assert other.levelno == logging.ERROR  # only that one record is softened
