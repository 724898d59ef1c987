"""`python -m devtools.smoke`: run the smoke scenario, print a report, exit 0 or 1."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from rabbitipc import defaults

from .scenario import smoke


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.smoke", description=__doc__.split(":")[0])
    sub = parser.add_subparsers(dest="target", required=True)
    kube = sub.add_parser("kubernetes", help="the Deployment in the cluster of the current kubeconfig")
    kube.add_argument("--namespace", default="default")
    kube.add_argument("--deployment", default="rabbitipc")
    kube.add_argument("--context", help="kubeconfig context (default: the current one)")
    pod = sub.add_parser("podman", help="play a rendered bundle with podman, check it, remove it")
    pod.add_argument("--kustomize", default="k8s/base", help="directory to render with kubectl kustomize")
    pod.add_argument("--keep", action="store_true", help="leave the pod running afterwards")
    for p in (kube, pod):
        p.add_argument("--min-messages", type=int, default=5, help="received lines required (default 5)")
        p.add_argument("--timeout", type=float, default=300, help="seconds per wait (default 300)")
        p.add_argument("--queue", default=defaults.QUEUE)
        p.add_argument("--restart-broker", action="store_true",
                       help="also restart RabbitMQ and check nothing accepted is lost")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    bundle = None
    try:
        if args.target == "kubernetes":
            from .kube import KubernetesDriver

            driver = KubernetesDriver(args.namespace, args.deployment, context=args.context)
        else:
            import yaml

            from .podman import PodmanBundle, PodmanDriver

            rendered = subprocess.run(["kubectl", "kustomize", args.kustomize], capture_output=True,
                                      text=True, check=True, timeout=60).stdout
            bundle = PodmanBundle(list(yaml.safe_load_all(rendered)))
            bundle.up()
            driver = PodmanDriver(bundle)
        report = smoke(driver, args.min_messages, args.timeout, args.queue, restart_broker=args.restart_broker)
    except Exception as exc:  # noqa: BLE001 - the report's one line; the traceback helps no one here
        print(f"smoke test could not run: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if bundle is not None and not args.keep:
            bundle.down()
    print(report.render())
    return 0 if report.ok else 1
