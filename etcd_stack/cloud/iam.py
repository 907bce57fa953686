"""IAM building blocks shared by the components: trust policies and instance roles."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from etcd_stack.tags import tagged

# Lets SSM Session Manager reach the instance, so no instance needs SSH to be managed (SSM.1).
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


def policy(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def trust(service: str) -> str:
    return policy({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def instance_role(
    name: str, tags: Mapping[str, str], parent: pulumi.Resource
) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
    """A role for EC2 instances with the SSM core policy, and its instance profile."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=trust("ec2.amazonaws.com"), tags=tagged(tags, name), opts=child)
    aws.iam.RolePolicyAttachment(f"{name}-ssm", role=role.name, policy_arn=SSM_CORE_POLICY, opts=child)
    profile = aws.iam.InstanceProfile(name, role=role.name, tags=tagged(tags, name), opts=child)
    return role, profile
