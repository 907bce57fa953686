"""The AWS role `pulumi preview` runs under in CI (docs/preview-role-policy.json): enough for every lookup the
program makes, read-only, and no read of any parameter of the stack."""

from __future__ import annotations

import fnmatch
import json

import pytest

from etcd_stack.preview import mocks, offline

POLICY = json.loads((offline.PROJECT_DIR / "docs" / "preview-role-policy.json").read_text())
# What each lookup the program makes asks of AWS (the provider's own credential check is sts:GetCallerIdentity).
LOOKUPS = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": "ec2:DescribeAvailabilityZones",
    "aws:ssm/getParameter:getParameter": "ssm:GetParameter",
    "aws:index/getCallerIdentity:getCallerIdentity": "sts:GetCallerIdentity",
    # The deployer's role with its path, for the key policy (the provider reads it with iam:GetRole).
    "aws:iam/getSessionContext:getSessionContext": "iam:GetRole",
    # Only with etcd:vpcId.
    "aws:ec2/getVpc:getVpc": "ec2:DescribeVpcs",
    "aws:ec2/getSubnet:getSubnet": "ec2:DescribeSubnets",
}


def resource_of(token: str, args: dict) -> str:
    if "ssm" in token:
        return f"arn:aws:ssm:eu-west-2::parameter{args['name']}"
    if "SessionContext" in token:
        role = args["arn"].split(":assumed-role/", 1)[1].split("/", 1)[0]
        return f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/{role}"
    return "*"


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allowed(action: str, resource: str) -> bool:
    """IAM's answer for one identity policy without conditions: an Allow whose action (any case) and resource
    (exact case) patterns match, and no such Deny."""
    def applies(statement: dict) -> bool:
        return (any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"]))
                and any(fnmatch.fnmatchcase(resource, r) for r in listed(statement["Resource"])))

    effects = [s["Effect"] for s in POLICY["Statement"] if applies(s)]
    return "Allow" in effects and "Deny" not in effects


@pytest.fixture(scope="module")
def run_and_lookups():
    seen: list[tuple[str, dict]] = []
    original = mocks.StackMocks.call

    def recording(self, args):
        seen.append((args.token, dict(args.args)))
        return original(self, args)

    mocks.StackMocks.call = recording
    try:
        run = offline.run({"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static"}, "test")
    finally:
        mocks.StackMocks.call = original
    return run, seen


def test_every_lookup_the_program_makes_is_one_the_role_allows(run_and_lookups):
    _, seen = run_and_lookups
    assert {token for token, _ in seen} <= set(LOOKUPS), "a new lookup needs the role and the README updated"
    assert allowed("sts:GetCallerIdentity", "*")
    for token, args in seen:
        resource = resource_of(token, args)
        assert allowed(LOOKUPS[token], resource), (token, resource)


def test_the_role_reads_no_parameter_of_the_stack_and_writes_nothing(run_and_lookups):
    run, _ = run_and_lookups
    parameters = run.of_type("aws:ssm/parameter:Parameter")
    assert parameters
    for parameter in parameters:
        arn = f"arn:aws:ssm:eu-west-2:{mocks.ACCOUNT_ID}:parameter{parameter.inputs['name']}"
        for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"):
            assert not allowed(action, arn), (action, arn)
    actions = [a for s in POLICY["Statement"] for a in listed(s["Action"])]
    assert all(a.split(":")[1].startswith(("Get", "Describe", "List")) and "*" not in a for a in actions), actions
