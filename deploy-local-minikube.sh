#!/usr/bin/env bash
# Build both images into minikube and deploy the bundle; then watch the traffic with kubectl logs.
#   ./deploy-local-minikube.sh            build, apply k8s/overlays/minikube, wait for the rollout
#   ./deploy-local-minikube.sh --delete   remove everything it deployed
# Settings: RABBITIPC_OVERLAY (default k8s/overlays/minikube), RABBITIPC_NAMESPACE (default
# default), RABBITIPC_ROLLOUT_TIMEOUT (seconds, default 300). Idempotent: run it again after a
# change and the Deployment rolls to the new images.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/scripts/lib.sh"
cd "$ROOT"

OVERLAY=${RABBITIPC_OVERLAY:-k8s/overlays/minikube}
NAMESPACE=${RABBITIPC_NAMESPACE:-default}
TIMEOUT=${RABBITIPC_ROLLOUT_TIMEOUT:-300}
VERSION=0.1.0

case "${1:-}" in
  "" | --delete) ;;
  -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --delete or --help)" ;;
esac

for tool in minikube kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed: see https://minikube.sigs.k8s.io/docs/start/ and https://kubernetes.io/docs/tasks/tools/"
done
minikube status >/dev/null 2>&1 || die "minikube is not running: start it with 'minikube start'"
kubectl="kubectl --context minikube --namespace $NAMESPACE"

if [ "${1:-}" = --delete ]; then
  $kubectl delete -k "$OVERLAY" --ignore-not-found --wait=true
  log "deleted the bundle ($OVERLAY) from namespace $NAMESPACE"
  exit 0
fi

for role in sender receiver; do
  log "building rabbitipc-$role:$VERSION inside minikube"
  minikube image build -t "rabbitipc-$role:$VERSION" -f "Dockerfile-$role" .
done

log "applying $OVERLAY"
$kubectl apply -k "$OVERLAY"
# Same tag, new build: restart so the Pod picks up the images just built.
deployments=$($kubectl get -k "$OVERLAY" -o name 2>/dev/null | grep '^deployment' || true)
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

if printf '%s\n' "$deployments" | grep -qx deployment.apps/rabbitipc; then
  logs="kubectl logs -f deployment/rabbitipc -c receiver     (and -c sender)"
  ui=$(minikube service rabbitipc --namespace "$NAMESPACE" --url 2>/dev/null | head -n 1 || true)
else
  logs="kubectl logs -f deployment/rabbitipc-receiver        (and deployment/rabbitipc-sender)"
  ui=""
fi
cat <<INFO

rabbitipc is running in namespace $NAMESPACE. Watch the traffic:
  $logs
Management UI (user and password: kubectl get secret -l app.kubernetes.io/part-of=rabbitipc -o yaml):
  ${ui:-kubectl port-forward service/rabbitipc-rabbitmq 15672, then http://localhost:15672/}
Smoke test:  .venv/bin/python -m devtools.smoke kubernetes --namespace $NAMESPACE
Remove:      ./deploy-local-minikube.sh --delete
INFO
