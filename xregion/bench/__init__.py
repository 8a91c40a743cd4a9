"""``xregion bench``: raw nats-py baselines and the bus's own paths, measured in one run on one
server (:mod:`xregion.bench.runner`); :mod:`xregion.bench.common` holds the helpers shared with
the auditor's replay benchmark (:mod:`xregion.auditor.bench`)."""
