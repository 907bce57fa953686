"""The controls as pulumi-policy policies: thin adapters from the engine's view of resources to ours."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

try:  # run by the policy engine, from this folder
    from controls import CONTROLS, Control, Resource
except ImportError:  # imported as a package by the tests
    from policy.controls import CONTROLS, Control, Resource


def _resource(engine_resource: Any) -> Resource:
    dependencies = getattr(engine_resource, "property_dependencies", None) or {}
    return Resource(
        engine_resource.resource_type,
        engine_resource.name,
        engine_resource.props,
        {prop: [(d.resource_type, d.name) for d in deps] for prop, deps in dependencies.items()},
    )


def _resource_policy(control: Control) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in control.check(_resource(args)):
            report_violation(message, None)

    return ResourceValidationPolicy(name=control.name, description=control.description, validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY)


def _stack_policy(control: Control) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in control.check([_resource(r) for r in args.resources]):
            report_violation(message, None)

    return StackValidationPolicy(name=control.name, description=control.description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [_stack_policy(c) if c.scope == "stack" else _resource_policy(c) for c in CONTROLS]
