"""``xregion bench``: raw nats-py baselines and the bus's own paths, measured in one run on one
server (:mod:`xregion.bench.runner`); :mod:`xregion.bench.raw` holds the raw nats-py baseline,
:mod:`xregion.bench.child` the second process that consumes (TJ's adapter, or the raw pull
consumer), :mod:`xregion.bench.common` the helpers shared with the auditor's replay benchmark
(:mod:`xregion.auditor.bench`)."""
