"""What an implementation of the v1 contract must do, as data and as a test it can run.

* :mod:`xregion.conformance.answers` — the answer table: which events an addressee's adapter
  answers automatically, with what, with which ids (docs/signing-recipe.md §10);
* :mod:`xregion.conformance.kit` — the conformance kit in ``schemas/conformance/``: signed
  example events and the outcome each must have at a receiver, with throw-away keys;
* :mod:`xregion.conformance.runner` — plays the kit against a receiver on a NATS server and
  judges every outcome (``xregion conformance run``).
"""
