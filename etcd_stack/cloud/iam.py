"""IAM building blocks shared by the components: trust policies, instance roles and the ARNs policies name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from etcd_stack.tags import tagged

# What the SSM Agent calls for Session Manager (the AWSCloud9SSMInstanceProfile managed policy, which AWS
# publishes for exactly that) and for Run Command (ec2messages: Systems Manager user guide, "Reference:
# ec2messages, ssmmessages, and other API operations"). None of them reads a parameter. None of them
# supports resource-level permissions, so "*" is the only resource they take.
SSM_AGENT_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)

# Every SSM action that returns a parameter's value; a deny must name each (ps-restrict-parameter-access).
PARAMETER_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory")
PATH_READ = "ssm:GetParametersByPath"


def policy(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def trust(service: str) -> str:
    return policy({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def parameter_arn(region: str, account: str, name: str) -> str:
    """The ARN SSM gives the parameter (or path) `name`, which starts with a slash."""
    return f"arn:aws:ssm:{region}:{account}:parameter{name}"


def ssm_agent_policy() -> str:
    return policy({"Sid": "SsmAgent", "Effect": "Allow", "Action": list(SSM_AGENT_ACTIONS), "Resource": "*"})


def instance_role(
    name: str, tags: Mapping[str, str], parent: pulumi.Resource
) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
    """A role for EC2 instances that Session Manager and Run Command can reach, and its instance profile.

    Not AmazonSSMManagedInstanceCore: it allows ssm:GetParameter(s) on every parameter of the account.
    """
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=trust("ec2.amazonaws.com"), tags=tagged(tags, name), opts=child)
    aws.iam.RolePolicy(f"{name}-ssm-agent", role=role.id, policy=ssm_agent_policy(), opts=child)
    profile = aws.iam.InstanceProfile(name, role=role.name, tags=tagged(tags, name), opts=child)
    return role, profile
