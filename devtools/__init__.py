"""Developer tools, outside the runtime wheel and the images.

`localbroker`: a private RabbitMQ node for tests, the benchmark and the local run (stdlib only).
`smoke`: the smoke scenario for a deployed bundle and its drivers (Kubernetes API, podman).
Run them from the repository root: `python3 -m devtools.localbroker`, `python -m devtools.smoke`.
"""
