"""TLS with a certificate made in the test (openssl CLI) and bearer-token authentication."""

from __future__ import annotations

import grpc
import pytest

from denarius.engine.errors import ConfigError
from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2
from denarius.serving.server import BackgroundServer, load_tokens

from serving_helpers import make_certificate, wait_for_metric

TOKENS = ("first-token-0123456789", "second-token-abcdef")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure_server(tiny_bundle, certificate):
    from serving_helpers import server_config

    cert, key = certificate
    with BackgroundServer(server_config(tiny_bundle, tls_cert=cert, tls_key=key, tokens=TOKENS)) as running:
        yield running


def _client(server, certificate, **options):
    return CoinClient(f"localhost:{server.port}", ca_cert=certificate[0], timeout=20, retries=0, **options)


def test_tls_and_token_identify(secure_server, certificate, photo_bytes):
    for token in TOKENS:
        with _client(secure_server, certificate, token=token) as client:
            answer = client.identify(photo_bytes["obverse"], photo_bytes["reverse"], top_k=2)
            assert len(answer.candidates) == 2
            assert client.model_info().version == "tiny-test"


@pytest.mark.parametrize("token, words", [(None, "missing bearer token"), ("wrong-token", "invalid bearer token"),
                                          (TOKENS[0] + "x", "invalid bearer token"), (TOKENS[0][:-1], "invalid")])
def test_missing_or_wrong_token_is_unauthenticated(secure_server, certificate, photo_bytes, token, words):
    with _client(secure_server, certificate, token=token) as client:
        for call in (lambda: client.identify(reverse=photo_bytes["reverse"]), client.model_info,
                     lambda: client.landmarks(photo_bytes["reverse"], side="reverse", max_iterations=2),
                     lambda: list(client.identify_stream([coins_pb2.IdentifyRequest(reverse=photo_bytes["reverse"])]))):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert words in caught.value.details()


def test_health_reachable_without_token(secure_server, certificate):
    with _client(secure_server, certificate) as client:
        assert client.health() == "SERVING"
        assert client.health("denarius.v1.CoinService") == "SERVING"


def test_rejections_are_counted(secure_server, certificate):
    with _client(secure_server, certificate, token="nope") as client:
        with pytest.raises(grpc.RpcError):
            client.model_info()
    # The metrics endpoint is TLS with the server's certificate and takes the same tokens.
    assert wait_for_metric(secure_server.metrics_port, "denarius_requests_total", lambda v: v >= 1,
                           token=TOKENS[1], ca=certificate[0], method="GetModelInfo", code="UNAUTHENTICATED") >= 1


def test_plaintext_client_cannot_talk_to_tls_server(secure_server):
    with CoinClient(f"127.0.0.1:{secure_server.port}", token=TOKENS[0], timeout=3, retries=0) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.model_info()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_untrusted_certificate_is_refused(secure_server, tmp_path):
    other_cert, _ = make_certificate(tmp_path, "other")
    with CoinClient(f"localhost:{secure_server.port}", ca_cert=other_cert, token=TOKENS[0], timeout=3,
                    retries=0) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.model_info()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_load_tokens_from_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "tokens"
    path.write_text("# comment\n  alpha-token \n\nbeta-token\n")
    monkeypatch.setenv("DENARIUS_TEST_TOKENS", "gamma, alpha-token")
    assert load_tokens(token_file=path, token_env="DENARIUS_TEST_TOKENS") == ("alpha-token", "beta-token", "gamma")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no token"):
        load_tokens(token_file=tmp_path / "empty")
    with pytest.raises(ConfigError, match="not set"):
        load_tokens(token_env="DENARIUS_TEST_UNSET_VARIABLE")
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens(token_file=tmp_path / "absent")


@pytest.mark.parametrize("tokens", [("",), ("two words",), ("ok", "tab\there")])
def test_a_token_that_could_never_be_sent_is_a_config_error_for_grpc_and_http(tokens):
    from denarius.serving.http.app import HttpConfig
    from denarius.serving.server import ServerConfig

    with pytest.raises(ConfigError, match="non-empty and contain no whitespace"):
        ServerConfig(bundle=".", tokens=tokens)
    with pytest.raises(ConfigError, match="non-empty and contain no whitespace"):
        HttpConfig(tokens=tokens)
