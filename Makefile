# rabbitipc: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## broker + receiver + sender locally, traffic on screen (Ctrl-C stops)
	./run-local.sh

.PHONY: test
test: ## the whole test suite against a private RabbitMQ node
	./run-tests.sh

.PHONY: broker
broker: ## start RabbitMQ for manual experiments (Docker, else a local node)
	./start-local-docker-rabbitmq.sh

.PHONY: broker-stop
broker-stop: ## stop that broker
	./start-local-docker-rabbitmq.sh --stop

.PHONY: podman
podman: ## install podman and its settings for the end-to-end tests (Debian, root)
	./scripts/install-podman.sh

.PHONY: e2e
e2e: ## build the images and play the Pod with podman, then the smoke scenario
	./run-tests.sh -m podman

.PHONY: docker-e2e
docker-e2e: ## on a Docker engine of our own: the local broker script, compose.yaml, the flask-jobs stack (root)
	./run-tests.sh -m docker

.PHONY: bench
bench: ## rabbitipc against the C limit, amqplib and the Python clients, timed alike, 3 interleaved rounds (BENCH_ARGS="--clients rabbitipc,c-librabbitmq")
	./run-tests.sh --version >/dev/null
	.venv/bin/python -m pip install -q -e '.[bench]'
	.venv/bin/python -m bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: ## the same, small and once: checks that it runs, not where we stand (a clone's first run installs the test tools, the bench extra and npm's amqplib first: ~2 min more)
	$(MAKE) bench BENCH_ARGS=--quick

.PHONY: bench-rpc
bench-rpc: ## request/reply round trips: our RpcClient and responder, the tutorial's pair, aio-pika's RPC, a C pair; 1 and 8 callers
	./run-tests.sh --version >/dev/null
	.venv/bin/python -m pip install -q -e '.[bench]'
	.venv/bin/python -m bench.rpc $(BENCH_ARGS)

.PHONY: bench-crosscheck
bench-crosscheck: ## make bench's throughput rows cross-checked: the same programs timed by the shell on a plain node (COMPARE=bench-results/results.json)
	./run-tests.sh --version >/dev/null
	bash bench/crosscheck.sh $(if $(COMPARE),--compare $(COMPARE))

.PHONY: bench-sweep
bench-sweep: ## throughput by receiver --prefetch and sender --window (how the defaults were sized)
	$(MAKE) bench BENCH_ARGS=--sweep

.PHONY: profile
profile: ## where the CPU goes: sender and receiver under py-spy, grouped by component
	./run-tests.sh --version >/dev/null
	.venv/bin/python -m pip install -q -e '.[bench]'
	.venv/bin/python -m bench.profile $(PROFILE_ARGS)

.PHONY: deploy
deploy: ## build the images into minikube and deploy the bundle
	./deploy-local-minikube.sh

.PHONY: undeploy
undeploy: ## remove the bundle from minikube
	./deploy-local-minikube.sh --delete

.PHONY: venv
venv: ## create or update .venv: rabbitipc with the test tools and the kubernetes client
	@bash -c '. scripts/lib.sh && ensure_venv test'

.PHONY: smoke
smoke: venv ## check the deployed bundle (current kubeconfig context; SMOKE_ARGS="--context P --namespace NS --restart-broker")
	$${RABBITIPC_VENV:-.venv}/bin/python -m devtools.smoke kubernetes $(SMOKE_ARGS)

.PHONY: clean
clean: ## remove the virtualenv, the local node and caches
	-./start-local-docker-rabbitmq.sh --stop
	rm -rf .venv .rabbitmq .pytest_cache build *.egg-info
