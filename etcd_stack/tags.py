"""Tags every AWS resource carries: the stack's common tags and its own Name."""

from collections.abc import Mapping


def tagged(common: Mapping[str, str], name: str) -> dict[str, str]:
    return {**common, "Name": name}
