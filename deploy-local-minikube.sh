#!/usr/bin/env bash
# Build both images into minikube and deploy the bundle; then watch the traffic with kubectl logs.
#   ./deploy-local-minikube.sh            build, apply k8s/overlays/minikube, wait for the rollout
#   ./deploy-local-minikube.sh --delete   remove everything it deployed
# Settings: RABBITIPC_OVERLAY (default k8s/overlays/minikube; the other layout: k8s/scaled),
# RABBITIPC_NAMESPACE (default default), RABBITIPC_MINIKUBE_PROFILE (default minikube: the
# minikube profile, and the kubeconfig context minikube names after it), RABBITIPC_ROLLOUT_TIMEOUT
# (seconds, default 300). Idempotent: run it again after a change and the Pods roll to the new images.
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
  "" | --delete) ;;
  -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --delete or --help)" ;;
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
  log "deleted the bundle ($OVERLAY) from namespace $NAMESPACE"
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
for deployment in $deployments; do
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
