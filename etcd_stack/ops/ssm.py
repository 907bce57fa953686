"""The AWS transport: members found through the EC2 API by their tags, commands run through SSM Run Command
(AWS-RunShellScript), each polled to a final status under a deadline of its own. No Pulumi CLI is needed:
the stack file gives the region and the cluster's name. boto3 reads credentials as the AWS CLI does
(AWS_PROFILE, the environment, SSO) and honours AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import boto3
from botocore.exceptions import ClientError

from etcd_stack.member.rendering import METRICS_PORT, Paths
from etcd_stack.ops.transport import BadInput, OperationError
from etcd_stack.tags import CLUSTER_TAG, MEMBER_TAG, STACK_TAG

DOCUMENT = "AWS-RunShellScript"
FINAL_FAILURES = ("Failed", "TimedOut", "Cancelled")
# SendCommand's floor for the delivery timeout: a command not started by then never runs.
DELIVERY_TIMEOUT_S = 30
POLL_S = 2.0
# AWS-RunShellScript's executionTimeout allows up to 48 hours.
MAX_EXECUTION_S = 172800
HEALTH_DEADLINE_S = 60
# curl's exit statuses when the member does not answer, in the words the sandbox's health check uses.
CURL_FAILURES = {7: "not listening", 28: "no answer within 3s"}


class Instance(NamedTuple):
    member: str
    instance_id: str
    private_ip: str


@dataclass(frozen=True)
class SsmHealth:
    status_code: int
    healthy: bool
    reason: str


def discover(ec2: Any, stack: str, cluster_name: str) -> dict[str, Instance]:
    """The stack's running members by name, from their tags (cloud/members.py sets them)."""
    filters = [
        {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_name]},
        {"Name": f"tag:{STACK_TAG}", "Values": [stack]},
        {"Name": "tag-key", "Values": [MEMBER_TAG]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    found: dict[str, Instance] = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
                member = tags[MEMBER_TAG]
                if member in found:
                    raise BadInput(f"--stack {stack}: two running instances claim member {member}: "
                                   f"{found[member].instance_id} and {instance['InstanceId']}")
                found[member] = Instance(member, instance["InstanceId"], instance["PrivateIpAddress"])
    if not found:
        raise BadInput(f"--stack {stack}: no running instances tagged {CLUSTER_TAG}={cluster_name}, "
                       f"{STACK_TAG}={stack} and {MEMBER_TAG}")
    return dict(sorted(found.items(), key=lambda item: _index(item[0])))


def _index(member: str) -> tuple[int, str]:
    suffix = member.rsplit("-", 1)[-1]
    return (int(suffix), member) if suffix.isdigit() else (1 << 30, member)


class SsmTransport:
    def __init__(self, stack: str, instances: dict[str, Instance], ssm: Any,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 poll_s: float = POLL_S):
        self.where = f"stack {stack}"
        self._stack, self._instances, self._ssm = stack, instances, ssm
        self._clock, self._sleep, self._poll_s = clock, sleep, poll_s

    @classmethod
    def connect(cls, stack: str, cluster_name: str, region: str, session: Any = None) -> SsmTransport:
        session = session or boto3.Session(region_name=region)
        instances = discover(session.client("ec2", region_name=region), stack, cluster_name)
        return cls(stack, instances, session.client("ssm", region_name=region))

    def members(self) -> list[str]:
        return list(self._instances)

    def _instance(self, member: str) -> Instance:
        if member not in self._instances:
            raise BadInput(f"--member: {member!r} is not one of {', '.join(self._instances)}")
        return self._instances[member]

    def script(self, member: str, name: str) -> str:
        self._instance(member)
        return Paths().script(name)

    def instance(self, member: str) -> str | None:
        found = self._instances.get(member)
        return found.instance_id if found else None

    def run(self, member: str, command: Sequence[str], deadline_s: float) -> subprocess.CompletedProcess:
        """Sends the command and polls its invocation until a final status; raises with the member's stderr on
        Failed, TimedOut or Cancelled, and when the deadline passes first (the command is then cancelled)."""
        status, invocation = self._invoke(member, command, deadline_s)
        if status != "Success":
            stderr = invocation.get("StandardErrorContent", "").strip()
            raise OperationError(f"{member}: {shlex.join(command)} ended {status} "
                                 f"({invocation.get('StatusDetails', status)}, exit status "
                                 f"{invocation.get('ResponseCode', -1)}): {stderr[-800:] or 'no output on stderr'}")
        return _completed(command, invocation)

    def _invoke(self, member: str, command: Sequence[str], deadline_s: float) -> tuple[str, dict[str, Any]]:
        """The command's final status and invocation (output at most 24,000 characters, as SSM keeps it)."""
        instance = self._instance(member)
        text = shlex.join(command)
        sent = self._ssm.send_command(
            InstanceIds=[instance.instance_id],
            DocumentName=DOCUMENT,
            Comment=f"etcd-stack {self._stack} {member}"[:100],
            TimeoutSeconds=DELIVERY_TIMEOUT_S,
            # The agent ends the script itself at the deadline, so nothing runs on after we give up.
            Parameters={"commands": [text],
                        "executionTimeout": [str(min(MAX_EXECUTION_S, max(1, int(deadline_s))))]},
        )
        command_id = sent["Command"]["CommandId"]
        deadline = self._clock() + deadline_s
        while True:
            invocation = self._invocation(command_id, instance.instance_id)
            status = invocation.get("Status") if invocation else None
            if status == "Success" or status in FINAL_FAILURES:
                return status, invocation
            if self._clock() >= deadline:
                self._ssm.cancel_command(CommandId=command_id, InstanceIds=[instance.instance_id])
                raise OperationError(f"{member}: {text} reached no final status within {deadline_s:g}s "
                                     f"(last {status or 'not yet delivered'}); cancelled command {command_id}")
            self._sleep(self._poll_s)

    def _invocation(self, command_id: str, instance_id: str) -> dict[str, Any] | None:
        try:
            return self._ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            # Right after SendCommand the invocation may not exist yet.
            if error.response["Error"]["Code"] == "InvocationDoesNotExist":
                return None
            raise

    def health(self, member: str) -> SsmHealth:
        """GET /health on the member's own address, as the load balancer asks it, run on the member."""
        url = f"http://{self._instance(member).private_ip}:{METRICS_PORT}/health"
        command = ["curl", "--silent", "--max-time", "3", "--write-out", r"\n%{http_code}", url]
        status, invocation = self._invoke(member, command, HEALTH_DEADLINE_S)
        if status != "Success":
            code = invocation.get("ResponseCode", -1)
            return SsmHealth(0, False, CURL_FAILURES.get(code, f"{status}: curl exit status {code}"))
        body, _, code = _completed(command, invocation).stdout.rpartition("\n")
        try:
            answer = json.loads(body or "{}")
        except ValueError:
            answer = {}
        return SsmHealth(int(code or 0), answer.get("health") == "true", answer.get("reason", ""))


def _completed(command: Sequence[str], invocation: dict[str, Any]) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(list(command), invocation["ResponseCode"], invocation["StandardOutputContent"],
                                       invocation["StandardErrorContent"])
