"""The compose files, without an engine: valid for docker-compose, and compose.yaml in step with the
Kubernetes bundle (same users, development passwords, queue and settings as the rendered k8s/base)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess

import pytest
import yaml

from support import ROOT

COMPOSE_FILES = [ROOT / "compose.yaml", ROOT / "examples" / "flask-jobs" / "compose.yaml",
                 ROOT / "compose.cluster.yaml"]


def defaults(value: str) -> str:
    """A compose value with each ${VAR:-default} replaced by its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def rendered_base() -> list[dict]:
    """k8s/base as kustomize renders it: what the Pod really gets, whatever the layout of the sources."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is needed to render the bundle")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "base")], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return list(yaml.safe_load_all(out))


def _named(docs: list[dict], kind: str, prefix: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))


def secret_literals() -> dict[str, str]:
    """The credentials and connection Secrets of the rendered base, decoded, as one dict."""
    docs = rendered_base()
    values = {}
    for name in ("rabbitipc-credentials", "rabbitipc-connection"):
        data = _named(docs, "Secret", name)["data"]
        values.update({key: base64.b64decode(value).decode() for key, value in data.items()})
    return values


def pod_env(container: str) -> dict[str, object]:
    """A container's environment in the rendered Pod: its env entries over its ConfigMap's."""
    docs = rendered_base()
    spec = _named(docs, "Deployment", "rabbitipc")["spec"]["template"]["spec"]
    found = next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container)
    env: dict[str, object] = {}
    for source in found.get("envFrom", []):
        env.update(_named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e.get("value", e.get("valueFrom")) for e in found.get("env", [])})
    return env


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_file_is_valid_for_docker_compose(path):
    """docker-compose accepts the file as written (no engine needed)."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITIPC_", "JOBS_"))}
    result = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], cwd=path.parent, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_uses_the_bundle_users_and_passwords():
    """Each program connects as its own user with the bundle's development password; the
    definitions get the same three users; the broker's default user is the admin."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    secret = secret_literals()
    for role in ("sender", "receiver"):
        url = defaults(services[role]["environment"]["AMQP_URL"])
        assert url == secret[f"{role}_connection_string"].replace("@localhost:", "@rabbitmq:"), role
    definitions = {key: defaults(value) for key, value in services["definitions"]["environment"].items()}
    assert definitions["RABBITIPC_ADMIN_USER"] == secret["username"]
    assert definitions["RABBITIPC_ADMIN_PASSWORD"] == secret["password"]
    for role in ("sender", "receiver"):
        assert definitions[f"RABBITIPC_{role.upper()}_USER"] == secret[f"{role}-username"]
        assert definitions[f"RABBITIPC_{role.upper()}_PASSWORD"] == secret[f"{role}-password"]
    broker = {key: defaults(value) for key, value in services["rabbitmq"]["environment"].items()}
    assert (broker["RABBITMQ_DEFAULT_USER"], broker["RABBITMQ_DEFAULT_PASS"]) == (secret["username"],
                                                                                  secret["password"])


def test_compose_settings_match_the_pod():
    """Queue, retry, health file and the broker's config file are set as in the Pod; the programs run
    with a read-only root and no capabilities, the broker as the image's rabbitmq user."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for role in ("sender", "receiver"):
        env, pod = services[role]["environment"], pod_env(role)
        for name in ("RABBITIPC_QUEUE", "RABBITIPC_RETRY_TIMEOUT", "RABBITIPC_HEALTH_FILE"):
            assert env[name] == pod[name], (role, name)
        assert services[role]["read_only"] is True and services[role]["cap_drop"] == ["ALL"]
    assert services["definitions"]["environment"]["RABBITIPC_QUEUE"] == pod_env("definitions")["RABBITIPC_QUEUE"]
    assert (services["rabbitmq"]["environment"]["RABBITMQ_CONFIG_FILE"]
            == pod_env("rabbitmq")["RABBITMQ_CONFIG_FILE"])
    assert services["rabbitmq"]["user"] == "999:999" and services["rabbitmq"]["image"] == "rabbitmq:3-management"
    assert all(port.startswith("127.0.0.1:") for port in services["rabbitmq"]["ports"]), "loopback only"


def test_flask_jobs_workers_can_scale():
    """The worker service has no fixed name and publishes no port, so --scale worker=N works."""
    services = yaml.safe_load(COMPOSE_FILES[1].read_text())["services"]
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]


def test_compose_cluster_gives_the_programs_every_node_and_the_bundle_settings():
    """compose.cluster.yaml: three nodes whose host names are the peer list's, each with its own volume and the
    cookie from the environment; the programs get the three nodes' URLs with the users, passwords and settings of
    compose.yaml."""
    single = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    services = yaml.safe_load((ROOT / "compose.cluster.yaml").read_text())["services"]
    nodes = sorted(name for name in services if name.startswith("rabbitmq-"))
    assert nodes == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    peers = re.findall(r"classic_config\.nodes\.\d = rabbit@(\S+)", services["definitions"]["entrypoint"][-1])
    assert peers == nodes and [services[n]["hostname"] for n in nodes] == nodes
    assert len({services[n]["volumes"][0] for n in nodes}) == 3, "a data volume per node"
    for name in nodes:
        env = services[name]["environment"]
        assert env["RABBITIPC_ERLANG_COOKIE"].startswith("${RABBITIPC_ERLANG_COOKIE:-")
        assert services[name]["user"] == "999:999" and services[name]["image"] == single["rabbitmq"]["image"]
    for role in ("sender", "receiver"):
        one = defaults(single[role]["environment"]["AMQP_URL"])
        urls = defaults(services[role]["environment"]["AMQP_URL"]).split(";")
        assert urls == [one.replace("@rabbitmq:", f"@{node}:") for node in nodes], role
        for name in ("RABBITIPC_QUEUE", "RABBITIPC_RETRY_TIMEOUT", "RABBITIPC_HEALTH_FILE"):
            assert services[role]["environment"][name] == single[role]["environment"][name], (role, name)
    assert services["definitions"]["environment"] == single["definitions"]["environment"]
