"""What only operators run, beside the ``xregion ops`` command group: the embedded
``nats-server`` (:mod:`~xregion.ops.server`), cluster and leaf-node configurations
(:mod:`~xregion.ops.cluster`), development certificates (:mod:`~xregion.ops.certs`), the
server's accounts and users (:mod:`~xregion.ops.identities`), a development site's security
material (:mod:`~xregion.ops.security`), the topology declared as ADMIN, backups and restores
(:mod:`~xregion.ops.operator`, :mod:`~xregion.ops.backup`).

Adapters, the coordinator and the auditor never import it: they run on :mod:`xregion.runtime`.
"""
