"""QoS profiles of the node's topics.

Inputs follow the camera (best effort, depth 1 by default: stale frames are worthless).
Outputs are RELIABLE because a reliable writer matches both reliable and best-effort readers,
and KEEP_LAST, so a slow reader never blocks the node. label_info is TRANSIENT_LOCAL: a reader
that starts later still gets the class map.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy


def input_qos(reliability: str, depth: int) -> QoSProfile:
    policy = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}[reliability]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
OVERLAY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
LABEL_INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)


def policy_name(kind: int) -> str:
    try:
        return QoSPolicyKind(kind).name
    except ValueError:
        return f"policy {kind}"


def input_hint(policy: str, reliability: str) -> str:
    """What to change when a camera publisher and the node's subscription do not match."""
    if policy == "RELIABILITY" and reliability == "reliable":
        return "the publisher is best effort; set qos_reliability:=best_effort to receive it"
    return f"the publisher's {policy} does not satisfy the node's input QoS ({reliability}, volatile)"
