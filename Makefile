# Two commands on a fresh machine: `make sandbox` (the main job: the dev stack's cluster as real etcd
# members on this machine) and `make test`. Each creates .venv (the virtualenv Pulumi.yaml names) and
# installs what it needs first. `make render` writes the offline preview of the AWS resources.
STACK ?= dev
OUT ?= build/$(STACK)
DIR ?= build/sandbox
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# etcd 3.4 from Debian's etcd-server, unpacked here; the 3.5, 3.6 and 3.7 the tests run are built from etcd's
# Go modules (or, without Go, fetched as checksum-verified releases) into $(VENV)/etcd/<version> when missing.
ETCD34 := $(VENV)/etcd-3.4
TEST_TOOLS := $(VENV)/.test-tools

.PHONY: sandbox sandbox-status sandbox-down render test bench venv clean

sandbox: $(INSTALLED)
	$(VENV)/bin/etcd-stack sandbox up --stack $(STACK) --dir $(DIR)

sandbox-status: $(INSTALLED)
	$(VENV)/bin/etcd-stack sandbox status --dir $(DIR)

sandbox-down: $(INSTALLED)
	$(VENV)/bin/etcd-stack sandbox down --dir $(DIR)

render: $(INSTALLED)
	$(VENV)/bin/etcd-stack render --stack $(STACK) --out $(OUT)

test: $(INSTALLED) $(TEST_TOOLS)
	$(VENV)/bin/python -m etcd_stack.sandbox.binaries
	$(VENV)/bin/python -m etcd_stack.sandbox.machines.rootfs
	$(VENV)/bin/python -m etcd_stack.sandbox.machines.metadata
	$(VENV)/bin/pytest

bench: $(INSTALLED)
	$(VENV)/bin/python -m bench

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[sandbox,test]'
	touch $@

$(TEST_TOOLS): scripts/install-test-tools $(INSTALLED)
	scripts/install-test-tools $(ETCD34)
	touch $@

clean:
	rm -rf $(VENV) build
