"""Three members bootstrapped through a discovery URL, as the dev stack's default does: each machine asks the
discovery service (its stand-in, over HTTPS at discovery.etcd.io's name) who the others are."""

from __future__ import annotations

import json

import pytest

from etcd_stack.sandbox.machines import discovery
from tests.machines.conftest import Cluster

pytestmark = pytest.mark.machines

MEMBERS = ["etcd-0", "etcd-1", "etcd-2"]


def test_members_find_each_other_through_the_discovery_url(boot):
    url = discovery.new_url()
    cluster: Cluster = boot(**{"etcd:bootstrap": "discovery", "etcd:discoveryUrl": url})
    cluster.wait_healthy()
    members = cluster.members()
    assert sorted(m["name"] for m in members) == MEMBERS
    assert not any(m.get("isLearner") for m in members)
    # Each member registered itself under the token, by its ID, with its name and peer URL.
    registered = discovery.registered(cluster.world, discovery.token_of(url))
    assert {int(k, 16) for k in registered} == {int(m["ID"]) for m in members}
    assert sorted(v.split("=", 1)[0] for v in registered.values()) == MEMBERS
    for name in MEMBERS:
        config = cluster.sh(name, "cat /etc/etcd/etcd.yaml").stdout
        assert f"discovery: {url}" in config and "initial-cluster:" not in config.replace("initial-cluster-", ""), \
            config
        status = json.loads(cluster.enter(name, ["cloud-init", "status", "--format=json"]).stdout)
        assert status["status"] == "done" and status["errors"] == [], (name, status)
