"""xregion — the Beijing-Tianjin-Hebei cross-region IP-enforcement case-referral bus.

Layers, each importing only downward:

* contracts — :mod:`xregion.errors`, :mod:`xregion.regions`, :mod:`xregion.subjects`,
  :mod:`xregion.envelope`, :mod:`xregion.contracts`, :mod:`xregion.lifecycle`,
  :mod:`xregion.signing`, :mod:`xregion.chain`, :mod:`xregion.codec`: the v1 wire format,
  pure and free of I/O;
* runtime — broker, outbox, relay, consumer: NATS JetStream plumbing;
* roles — adapter, coordinator, auditor and the CLI.
"""

__version__ = "0.1.0"
