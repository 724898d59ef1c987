"""Docker for the tests: our own engine, the base images, our images, compose projects.

The engine is started by scripts/start-dockerd.sh (its own socket, never the default one);
base images come from the engine or its registry, else from podman (the local stand-ins, built
by scripts/podman-standins.sh where no registry answers) through `podman save | docker load`.
Where no engine can be started the tests skip with the reason; under CI=true they fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from support import ROOT

ENGINE_SCRIPT = ROOT / "scripts" / "start-dockerd.sh"
STANDINS_SCRIPT = ROOT / "scripts" / "podman-standins.sh"
#: Base images by their Docker name, with the name podman's stand-ins carry.
BASES = {"python:3.11-slim": "docker.io/library/python:3.11-slim",
         "rabbitmq:3-management": "docker.io/library/rabbitmq:3-management"}
#: Our images: tag -> (Dockerfile, build context), all built from the repository root.
IMAGES = {
    "rabbitipc-sender:0.1.0": "Dockerfile-sender",
    "rabbitipc-receiver:0.1.0": "Dockerfile-receiver",
    "rabbitipc-flask-jobs:0.1.0": "examples/flask-jobs/Dockerfile",
}


def unavailable(reason: str):
    """Skip with the reason, or fail under CI, where the Docker tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Docker tests cannot run: {reason}")
    pytest.skip(reason)


class Docker:
    """The docker CLI (and compose) pointed at one engine through DOCKER_HOST."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.env = {**os.environ, "DOCKER_HOST": host}
        self.env.pop("DOCKER_CONTEXT", None)

    def run(self, *args: str, check: bool = True, timeout: float = 120, input_bytes: bytes | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input_bytes,
                                env={**self.env, **(env or {})}, cwd=ROOT, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:4])} failed ({result.returncode}):\n"
                                 f"{result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.decode(errors="replace")

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0

    def compose_command(self) -> list[str]:
        """docker-compose (v1, Debian's) when installed, else the `docker compose` plugin."""
        if shutil.which("docker-compose"):
            return ["docker-compose"]
        if self.run("compose", "version", check=False).returncode == 0:
            return ["docker", "compose"]
        unavailable("neither docker-compose nor the docker compose plugin is installed "
                    "(apt-get install docker-compose)")
        raise AssertionError("unreachable")


def start_engine() -> Docker:
    """The engine of RABBITIPC_TEST_DOCKER_HOST, else ours from scripts/start-dockerd.sh."""
    if shutil.which("docker") is None and shutil.which("dockerd") is None and os.geteuid() != 0:
        unavailable("Docker is not installed (apt-get install docker.io docker-compose)")
    given = os.environ.get("RABBITIPC_TEST_DOCKER_HOST")
    if given:
        docker = Docker(given)
        if docker.run("info", check=False).returncode != 0:
            unavailable(f"no Docker engine answers on RABBITIPC_TEST_DOCKER_HOST={given}")
        return docker
    if os.geteuid() != 0:
        unavailable("starting a Docker engine needs root (or set RABBITIPC_TEST_DOCKER_HOST to one)")
    result = subprocess.run([str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        unavailable(f"scripts/start-dockerd.sh could not start an engine:\n{result.stderr[-3000:]}")
    docker = Docker(result.stdout.strip().splitlines()[-1])
    remove_leftovers(docker)
    return docker


#: Names (and compose projects) the tests give what they start: `test-` after our own prefixes.
TEST_PREFIXES = ("rabbitipc-test-", "flask-jobs-test-")


def remove_leftovers(docker: Docker) -> None:
    """Remove what an interrupted run left in our own engine: its compose stacks restart with the
    engine (restart: unless-stopped) and would take CPU from this run. Only test-named containers."""
    listing = docker.out("ps", "-a", "--format", '{{.ID}} {{.Names}} {{.Label "com.docker.compose.project"}}')
    leftovers = [fields[0] for fields in (line.split() for line in listing.splitlines())
                 if any(name.startswith(TEST_PREFIXES) for name in fields[1:])]
    if leftovers:
        docker.run("rm", "-f", "-v", *leftovers, check=False, timeout=300)


def load_bases(docker: Docker) -> None:
    """Every base image in the engine: already there, pulled, else from podman (stand-ins built if need be)."""
    missing = [name for name in BASES if not docker.has_image(name)
               and docker.run("pull", "-q", name, check=False, timeout=600).returncode != 0]
    if not missing:
        return
    if shutil.which("podman") is None:
        unavailable(f"base images {missing} are not in the engine and podman is not installed to bring "
                    "in the stand-ins (./scripts/install-podman.sh)")
    podman_env = {**os.environ}
    podman_env.setdefault("CONTAINERS_CONF", str(ROOT / "scripts" / "podman" / "containers.conf"))
    absent = [name for name in missing
              if subprocess.run(["podman", "image", "exists", BASES[name]], env=podman_env).returncode]
    if absent:
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            unavailable(f"base images {absent} missing and no root+debootstrap to build the stand-ins")
        built = subprocess.run([str(STANDINS_SCRIPT)], capture_output=True, text=True, timeout=900, env=podman_env)
        assert built.returncode == 0, built.stderr[-3000:]
    for name in missing:
        saved = subprocess.run(["podman", "save", BASES[name]], capture_output=True, timeout=600, env=podman_env)
        assert saved.returncode == 0, saved.stderr.decode(errors="replace")[-3000:]
        docker.run("load", input_bytes=saved.stdout, timeout=600)
        if not docker.has_image(name):  # docker load keeps the name podman saved; give it the short one
            docker.run("tag", BASES[name], name)


def build_image(docker: Docker, tag: str) -> None:
    """Build one of our images with `docker build` from its unmodified Dockerfile (repeats hit the layer cache)."""
    before = docker.out("image", "inspect", "-f", "{{.Id}}", tag, check=False).strip()
    docker.run("build", "-q", "-f", IMAGES[tag], "-t", tag, ".", timeout=900)
    if before and before != docker.out("image", "inspect", "-f", "{{.Id}}", tag).strip():
        # The previous build, now untagged (not `image prune`: that would drop the build stage's cache).
        docker.run("rmi", before, check=False)


class Compose:
    """One compose project of our own (unique name, free host ports), driven through the CLI."""

    def __init__(self, docker: Docker, file: Path, env: dict[str, str], prefix: str) -> None:
        self.docker = docker
        self.file = file
        self.project = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        command = [*self.docker.compose_command(), "-p", self.project, "-f", str(self.file), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.file.parent,
                                env={**self.docker.env, **self.env}, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command[-len(args) - 4:])} failed ({result.returncode}):\n"
                                 f"{result.stderr[-3000:]}\n{self.logs()[-3000:]}")
        return result.stdout

    def logs(self, service: str | None = None) -> str:
        command = [*self.docker.compose_command(), "-p", self.project, "-f", str(self.file),
                   "logs", "--no-color", *([service] if service else [])]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.file.parent,
                                env={**self.docker.env, **self.env}, check=False)
        return result.stdout + result.stderr

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).split()

    def health(self, service: str) -> list[str]:
        """The health (or, without a health check, the state) of each of the service's containers."""
        states = []
        for container in self.containers(service):
            state = json.loads(self.docker.out("inspect", "-f", "{{json .State}}", container))
            states.append(state.get("Health", {}).get("Status") or state["Status"])
        return states

    def all_healthy(self, *services: str) -> bool:
        return all((states := self.health(service)) and set(states) == {"healthy"} for service in services)

    def down(self) -> None:
        self.run("down", "-v", "--timeout", "30", check=False, timeout=300)


def http_json(url: str, method: str = "GET", body: dict | None = None, auth: tuple[str, str] | None = None,
              timeout: float = 10) -> tuple[int, dict | list | None]:
    """(status, parsed JSON answer) of one HTTP request; a refused connection raises OSError."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None
