"""The deployment files agree with the CLI and with each other (no Docker here: checked as files)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from denarius.apps.cli import build_parser

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _serve_args(args: list[str]):
    """Parse a container's arguments the way its `denarius serve` entrypoint will."""
    return build_parser().parse_args(["serve", *args])


def _dockerfile_cmd() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    [entrypoint] = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    [cmd] = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert json.loads(entrypoint) == ["denarius", "serve"]
    return json.loads(cmd)


def test_the_image_command_is_a_valid_serve_command_on_all_interfaces():
    args = _serve_args(_dockerfile_cmd())
    assert args.host == "0.0.0.0" and args.metrics_host == "0.0.0.0"
    exposed = {int(port) for port in re.findall(r"^EXPOSE (.*)$", (DEPLOY / "Dockerfile").read_text(), re.M)[0].split()}
    assert {args.port, args.metrics_port} == exposed


def test_compose_waits_longer_than_the_drain():
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["denarius"]
    args = _serve_args(service["command"])
    grace = float(service["stop_grace_period"].rstrip("s"))
    assert grace > args.drain_delay + args.grace
    published = {int(mapping.split(":")[-1]) for mapping in service["ports"]}
    assert published == {args.port, args.metrics_port}


def test_kubernetes_probes_and_termination_grace_follow_the_server_flags():
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "denarius.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    service = next(d for d in documents if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = _serve_args(container["args"])
    assert pod["terminationGracePeriodSeconds"] > args.drain_delay + args.grace
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": args.port, "metrics": args.metrics_port}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == args.port, probe  # native gRPC probe on grpc.health.v1
    assert container["livenessProbe"]["tcpSocket"]["port"] == args.port  # health is NOT_SERVING while draining
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}


def test_the_gpu_recipe_installs_the_gpu_extras_from_the_documented_index():
    text = (DEPLOY / "README.md").read_text()
    recipe = text.split("```dockerfile", 1)[1].split("```", 1)[0]
    assert '".[gpu,tensorrt,serve]"' in recipe and "--extra-index-url https://pypi.nvidia.com" in recipe
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", recipe, re.M)[0])
    assert shlex.join(cmd)  # well-formed JSON exec form
    _serve_args(cmd)
