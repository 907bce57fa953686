"""etcd's supported upgrade path: one minor version at a time, each from a recent enough patch of the line before.

The minimums are the upstream upgrade guides' (etcd-io/website, content/en/docs/v3.6/upgrades/upgrade_3_6.md,
"Update 3.5": 3.5.32 or later; content/en/docs/v3.7/upgrades/upgrade_3_7.md, "Update 3.6": 3.6.11 or later).
"""

from __future__ import annotations

from etcd_stack.config import EtcdVersion

# The oldest patch of the previous line that a line can be reached from.
MINIMUM_BEFORE = {(3, 6): EtcdVersion(3, 5, 32), (3, 7): EtcdVersion(3, 6, 11)}


def parse(text: str) -> EtcdVersion:
    major, minor, patch = (int(part) for part in text.split("."))
    return EtcdVersion(major, minor, patch)


def refusal(current: EtcdVersion, target: EtcdVersion) -> str | None:
    """Why etcd cannot go from `current` to `target` in one step, or None when it can."""
    if target.line == current.line:
        return None
    if target.line < current.line:
        return (f"{current} to {target} is a downgrade; etcd leaves a minor version only through its own "
                "downgrade procedure (etcdctl downgrade), one minor version at a time")
    if target.major != current.major or target.minor != current.minor + 1:
        step = f"{current.major}.{current.minor + 1}"
        return f"{current} to {target} skips a minor version; upgrade to {step} first, one minor version at a time"
    minimum = MINIMUM_BEFORE.get(target.line)
    if minimum and current < minimum:
        return f"{current} to {target}: etcd {target.line[0]}.{target.line[1]} needs {minimum} or later first"
    return None
