"""The smoke scenario for a deployed bundle, written once, run through two drivers.

`scenario.smoke(driver)` checks what a user checks after deploying: the Pod is ready,
messages flow (sequence numbers advancing, no errors), the management API shows the queue
with a consumer and no backlog, and optionally that a broker restart loses nothing the
sender reported as accepted. Drivers: `kube.KubernetesDriver` (a real cluster, through the
kubernetes client) and `podman.PodmanDriver` (the same manifests played by podman).
"""
