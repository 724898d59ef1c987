#!/usr/bin/env bash
# Build both images into minikube and deploy the bundle; then watch the traffic with kubectl logs.
#   ./deploy-local-minikube.sh            build, apply k8s/overlays/minikube, wait for the rollout
#   ./deploy-local-minikube.sh --delete   remove everything it deployed
#   RABBITIPC_OVERLAY=k8s/cluster ./deploy-local-minikube.sh --kill-broker
#                                         delete a broker Pod of the deployed cluster layout under
#                                         traffic, wait for it to come back, check 0 lost, 0 twice
# Settings: RABBITIPC_OVERLAY (default k8s/overlays/minikube; the others: k8s/scaled, k8s/cluster),
# RABBITIPC_NAMESPACE (default default), RABBITIPC_MINIKUBE_PROFILE (default minikube: the
# minikube profile, and the kubeconfig context minikube names after it), RABBITIPC_ROLLOUT_TIMEOUT
# (seconds, default 300; also the --kill-broker wait), RABBITIPC_BROKER_POD (default
# rabbitipc-rabbitmq-0). Idempotent: run it again after a change and the Pods roll to the new images.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

OVERLAY=${RABBITIPC_OVERLAY:-k8s/overlays/minikube}
NAMESPACE=${RABBITIPC_NAMESPACE:-default}
PROFILE=${RABBITIPC_MINIKUBE_PROFILE:-minikube}
TIMEOUT=${RABBITIPC_ROLLOUT_TIMEOUT:-300}
# The image tag: pyproject.toml's version, also set once in k8s/components/common (images:).
VERSION=0.1.0

case "${1:-}" in
  "" | --delete | --kill-broker) ;;
  -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --delete, --kill-broker or --help)" ;;
esac

for tool in minikube kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed: see https://minikube.sigs.k8s.io/docs/start/ and https://kubernetes.io/docs/tasks/tools/"
done
minikube="minikube --profile $PROFILE"
$minikube status >/dev/null 2>&1 \
  || die "minikube profile '$PROFILE' is not running: start it with 'minikube start --profile $PROFILE'"
# The profile's own context, never whatever context happens to be current.
kubectl="kubectl --context $PROFILE --namespace $NAMESPACE"

if [ "${1:-}" = --delete ]; then
  $kubectl delete -k "$OVERLAY" --ignore-not-found --wait=true
  # The cluster layout's claims (one per node, from the StatefulSet's template) outlive it.
  $kubectl delete pvc -l app.kubernetes.io/component=broker-data --ignore-not-found --wait=true
  log "deleted the bundle ($OVERLAY) from namespace $NAMESPACE"
  exit 0
fi

# The message ids the sender logged as sent (confirmed), and those the receivers logged as received.
sent_ids() { $kubectl logs deployment/rabbitipc-sender --tail=-1 | sed -n 's/.* sent seq=[0-9]* id=\([^ ]*\).*/\1/p'; }
received_ids() {
  $kubectl logs -l app.kubernetes.io/component=receiver --tail=-1 --max-log-requests=20 \
    | sed -n 's/.* received seq=[0-9]* id=\([^ ]*\).*/\1/p'
}
# fault_failed WHAT: the wait for WHAT ran out: the Pods and the programs' last lines, exit 1.
fault_failed() {
  printf '%s\n' "error: $1 within ${TIMEOUT}s; the Pods and the programs' last lines:" >&2
  $kubectl get pods -l app.kubernetes.io/part-of=rabbitipc -o wide >&2 || true
  $kubectl logs deployment/rabbitipc-sender --tail 20 >&2 || true
  $kubectl logs -l app.kubernetes.io/component=receiver --tail 20 --prefix >&2 || true
  exit 1
}

if [ "${1:-}" = --kill-broker ]; then
  pod=${RABBITIPC_BROKER_POD:-rabbitipc-rabbitmq-0}
  uid=$($kubectl get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null) \
    || die "no Pod $pod in namespace $NAMESPACE: deploy the cluster layout first (RABBITIPC_OVERLAY=k8s/cluster $0)"
  before=$(sent_ids | wc -l)
  log "deleting pod/$pod under traffic ($before messages sent so far)"
  $kubectl delete pod "$pod" --wait=false
  deadline=$((SECONDS + TIMEOUT))
  # Back: a new Pod (another uid) under the same name, ready; the sender sent on meanwhile.
  until now=$($kubectl get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null) && [ "$now" != "$uid" ] \
    && $kubectl wait --for=condition=Ready "pod/$pod" --timeout=5s >/dev/null 2>&1 \
    && [ "$(sent_ids | wc -l)" -gt "$before" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fault_failed "pod/$pod did not come back ready while the sender sent on"
    sleep 2
  done
  log "pod/$pod is back; checking that every message sent was received"
  sent_ids | sort -u >"${TMPDIR:-/tmp}/rabbitipc-sent.$$"
  trap 'rm -f "${TMPDIR:-/tmp}/rabbitipc-sent.$$"' EXIT
  until lost=$(received_ids | sort -u | comm -23 "${TMPDIR:-/tmp}/rabbitipc-sent.$$" - | wc -l) && [ "$lost" -eq 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fault_failed "$lost messages sent were not received"
    sleep 2
  done
  twice=$(received_ids | sort | uniq -d | wc -l)
  sent=$(wc -l <"${TMPDIR:-/tmp}/rabbitipc-sent.$$")
  [ "$twice" -eq 0 ] || die "$twice messages were handled twice ($sent sent, 0 lost)"
  log "pod/$pod deleted under traffic: $sent sent, 0 lost, 0 handled twice"
  exit 0
fi

# `minikube image build` exits 0 even when the build fails, and a failed re-build would leave the
# previous image in place: build under a tag used once, check that it exists, then retag.
build_id="build-$(date +%s)-$$"
for role in sender receiver; do
  image="rabbitipc-$role:$VERSION"
  log "building $image inside minikube"
  $minikube image build -t "$image-$build_id" -f "Dockerfile-$role" .
  if ! $minikube image ls | grep -qF "rabbitipc-$role:$VERSION-$build_id"; then
    die "building $image failed (see the build output above; minikube image build reports success anyway)"
  fi
  $minikube image tag "$image-$build_id" "$image"
  $minikube image rm "$image-$build_id" >/dev/null 2>&1 || true
done

log "applying $OVERLAY"
$kubectl apply -k "$OVERLAY"
# Same tag, new build: restart so the Pod picks up the images just built.
objects=$($kubectl get -k "$OVERLAY" -o name 2>/dev/null || true)
deployments=$(printf '%s\n' "$objects" | grep '^deployment' || true)
for deployment in $deployments; do
  $kubectl rollout restart "$deployment" >/dev/null
done
# The cluster layout's RabbitMQ nodes (a StatefulSet, image not rebuilt here: no restart).
statefulsets=$(printf '%s\n' "$objects" | grep '^statefulset' || true)
for deployment in $statefulsets $deployments; do
  if ! $kubectl rollout status "$deployment" --timeout "${TIMEOUT}s"; then
    printf '%s\n' "error: $deployment did not become available within ${TIMEOUT}s; its pods:" >&2
    $kubectl get pods -l app.kubernetes.io/part-of=rabbitipc -o wide >&2 || true
    $kubectl describe "$deployment" >&2 || true
    $kubectl logs "$deployment" --all-containers --tail 50 --prefix >&2 || true
    exit 1
  fi
done

# The Service with the management port: rabbitipc (base, minikube) or rabbitipc-rabbitmq (scaled).
service=""
for candidate in $(printf '%s\n' "$objects" | grep '^service/' || true); do
  if [ -n "$($kubectl get "$candidate" -o jsonpath='{.spec.ports[?(@.name=="management")].port}' 2>/dev/null)" ]; then
    service=${candidate#service/}
    break
  fi
done
forward="kubectl --context $PROFILE --namespace $NAMESPACE port-forward service/${service:-rabbitipc} 15672"
ui="$forward, then http://localhost:15672/"
# A NodePort is reachable directly where the node is (Linux drivers); `minikube service --url`
# is not used: on the docker driver of macOS and Windows it opens a tunnel and blocks.
node_port=$($kubectl get "service/${service:-rabbitipc}" -o jsonpath='{.spec.ports[?(@.name=="management")].nodePort}' 2>/dev/null || true)
if [ -n "$node_port" ] && node_ip=$($minikube ip 2>/dev/null) && [ -n "$node_ip" ]; then
  ui="$ui
  or, where the minikube node is reachable (Linux): http://$node_ip:$node_port/"
fi
if printf '%s\n' "$deployments" | grep -qx deployment.apps/rabbitipc; then
  logs="kubectl --context $PROFILE logs -f deployment/rabbitipc -c receiver     (and -c sender)"
  smoke="make smoke SMOKE_ARGS=\"--context $PROFILE --namespace $NAMESPACE\""
else
  logs="kubectl --context $PROFILE logs -f -l app.kubernetes.io/component=receiver --prefix     (and deployment/rabbitipc-sender)"
  smoke="(drives the one-Pod layout: deploy k8s/overlays/minikube for it)"
fi
cat <<INFO

rabbitipc is running in namespace $NAMESPACE (minikube profile $PROFILE). Watch the traffic:
  $logs
Management UI (user and password: kubectl --context $PROFILE get secret -l app.kubernetes.io/part-of=rabbitipc -o yaml):
  $ui
Smoke test:  $smoke
Remove:      ./deploy-local-minikube.sh --delete
INFO
if [ -n "$statefulsets" ]; then
  echo "A broker node lost under traffic: RABBITIPC_OVERLAY=$OVERLAY ./deploy-local-minikube.sh --kill-broker"
fi
