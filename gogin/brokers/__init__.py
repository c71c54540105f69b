"""Brokers: how a node shares channels with other nodes (docs/deployment.md).

``memory`` keeps everything in this process (the default); ``redis`` shares channels, history
and resume between every node that uses the same Redis and key prefix; ``nats`` shares channels
over core NATS subjects (history and resume per node)."""

from gogin.brokers.base import Broker, BrokerUnavailable, PublishResult, report_failure
from gogin.brokers.memory import MemoryBroker


def create(server) -> Broker:
    """The broker that server.config.broker names."""
    kind = server.config.broker.type
    if kind == "memory":
        return MemoryBroker(server)
    if kind == "redis":
        from gogin.brokers.redis import RedisBroker
        return RedisBroker(server)
    if kind == "nats":
        from gogin.brokers.nats import NatsBroker
        return NatsBroker(server)
    raise ValueError(f"broker.type: {kind!r} is not built yet")


__all__ = ["Broker", "BrokerUnavailable", "MemoryBroker", "PublishResult", "create",
           "report_failure"]
