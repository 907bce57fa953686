"""The metrics publisher every member runs, against real etcd in the sandbox: its output (a file sink
in place of `aws cloudwatch put-metric-data`) is every figure of the catalogue with plausible values,
accepted by a CloudWatch client that validates it against the service model."""

from __future__ import annotations

import ast
import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from etcd_stack.member import rendering
from etcd_stack.member.metrics import METRICS
from etcd_stack.member.rendering import MetricsSettings
from etcd_stack.naming import metric_namespace
from etcd_stack.sandbox.cluster import Sandbox
from tests.local_aws import CREDENTIALS, REGION, aws_endpoint, cli_environment
from tests.sandbox.test_real_etcd import BINARIES
from tests.sandbox.test_sandbox import make_sandbox, wait_until, write

__all__ = ["aws_endpoint", "make_sandbox"]
NAMESPACE = metric_namespace("test", "etcd")


class Publisher:
    """Each member's rendered publisher, run as its timer would, by a Python with nothing but the stdlib."""

    def __init__(self, box: Sandbox, directory: Path):
        self.box, self.directory = box, directory
        self.settings = box.settings()

    def sink(self, name: str) -> Path:
        return self.directory / f"{name}.jsonl"

    def script(self, name: str, sink: str | None = None) -> Path:
        member = self.box.member(name)
        metrics = MetricsSettings(NAMESPACE, sink or f"file://{self.sink(name)}")
        settings = dataclasses.replace(self.settings, metrics=metrics,
                                       backup=dataclasses.replace(self.settings.backup, region=REGION))
        path = self.directory / f"etcd-metrics-{name}"
        path.write_text(rendering.metrics_script(settings, member, self.box.paths(member)))
        return path

    def run(self, name: str, sink: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        # -I -S: no site-packages, no user environment, as AL2023's python3 with no extra packages.
        return subprocess.run([sys.executable, "-I", "-S", str(self.script(name, sink))], capture_output=True,
                              text=True, timeout=60, check=False, env=env)

    def figures(self, name: str) -> list[dict[str, float]]:
        """Each run's figures for the member, oldest first."""
        runs = []
        for line in self.sink(name).read_text().splitlines():
            request = json.loads(line)
            runs.append({d["MetricName"]: d["Value"] for d in request["MetricData"]})
        return runs


def accepted_by_cloudwatch(request: dict) -> None:
    """PutMetricData as the CLI would send it, validated against botocore's CloudWatch model."""
    client = botocore.session.get_session().create_client(
        "cloudwatch", region_name="eu-west-2", aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        stubber.add_response("put_metric_data", {}, expected_params=request)
        client.put_metric_data(**request)
        stubber.assert_no_pending_responses()


def test_the_publisher_is_python_39_with_the_standard_library_only(tmp_path, make_sandbox):
    box = make_sandbox(size=1)
    source = Publisher(box, tmp_path).script(box.members[0].name).read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names)


@pytest.mark.parametrize("line", [(3, 4), (3, 5)], ids=["3.4", "3.5"])
def test_every_figure_reaches_cloudwatch_with_plausible_values_and_follows_the_cluster(line, tmp_path, make_sandbox,
                                                                                       monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(BINARIES[line]))
    box = make_sandbox()
    assert box.version.startswith(f"{line[0]}.{line[1]}.")
    publisher = Publisher(box, tmp_path)
    write(box, "greeting", "hello")
    for member in box.members:
        result = publisher.run(member.name)
        assert result.returncode == 0, result.stderr
    for member in box.members:
        (line,) = publisher.sink(member.name).read_text().splitlines()
        request = json.loads(line)
        accepted_by_cloudwatch(request)
        assert request["Namespace"] == "etcd-aws/test/etcd"
        units = {d["MetricName"]: d["Unit"] for d in request["MetricData"]}
        assert units == {metric.name: metric.unit for metric in METRICS}
        assert all(d["Dimensions"] == [{"Name": "Member", "Value": member.name}] for d in request["MetricData"])
        (first,) = publisher.figures(member.name)
        assert (first["HasLeader"], first["IsLearner"], first["LeaderChanges"]) == (1, 0, 0)
        assert (first["NospaceAlarm"], first["CorruptAlarm"], first["ProposalsFailed"]) == (0, 0, 0)
        assert 0 <= first["ProposalsPending"] < 100
        assert 0 < first["WalFsyncP99"] < 10 and 0 < first["BackendCommitP99"] < 10
        quota = box.settings().quota_backend_bytes
        assert 0 < first["DbSize"] < quota
        assert first["DbQuotaUsed"] == pytest.approx(100 * first["DbSize"] / quota)

    # The database grows with data.
    for index in range(40):
        write(box, f"bulk/{index:03d}", "x" * 100_000)
    head = box.leader()
    assert publisher.run(head).returncode == 0
    before, after = publisher.figures(head)
    assert after["DbSize"] > before["DbSize"] + 2_000_000
    assert after["DbQuotaUsed"] > before["DbQuotaUsed"]

    # The leader dies: the others count the change and still have a leader; the dead one publishes nothing.
    box.stop(box.member(head), signal.SIGKILL)
    wait_until(lambda: box.leader() != head, 20, "a new leader")
    for member in box.running():
        assert publisher.run(member.name).returncode == 0
        latest = publisher.figures(member.name)[-1]
        assert latest["LeaderChanges"] >= 1 and latest["HasLeader"] == 1
    silent = publisher.run(head)
    assert silent.returncode == 1 and "cannot read" in silent.stderr
    assert len(publisher.figures(head)) == 2


def test_the_publisher_puts_its_figures_through_the_aws_cli(tmp_path, make_sandbox, aws_endpoint):
    box = make_sandbox(size=1)
    (member,) = box.members
    result = Publisher(box, tmp_path).run(member.name, "cloudwatch", cli_environment(aws_endpoint, tmp_path))
    assert result.returncode == 0, result.stderr
    cloudwatch = boto3.client("cloudwatch", endpoint_url=aws_endpoint, region_name=REGION, **CREDENTIALS)
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == {metric.name for metric in METRICS}
    assert all(m["Dimensions"] == [{"Name": "Member", "Value": member.name}] for m in listed)
