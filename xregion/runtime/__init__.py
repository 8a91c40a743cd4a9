"""The runtime: NATS JetStream plumbing under the contracts.

:mod:`~xregion.ops.server` runs the embedded ``nats-server``;
:mod:`~xregion.runtime.topology` declares streams and consumers;
:mod:`~xregion.runtime.store` is an adapter's local durable state (outbox, inbox, views);
:mod:`~xregion.runtime.relay` drains the outbox to JetStream;
:mod:`~xregion.runtime.consumer` verifies and delivers inbound events;
:mod:`~xregion.runtime.deadletter` keeps what cannot be delivered, with the reason.
"""
