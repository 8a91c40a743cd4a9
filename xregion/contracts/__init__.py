"""Payload models of the four event families, and the catalog that names them on the wire.

Each family module (:mod:`~xregion.contracts.lead`, :mod:`~xregion.contracts.assist`,
:mod:`~xregion.contracts.recognition`, :mod:`~xregion.contracts.share`) maps its event
names to pydantic models. :mod:`xregion.contracts.catalog` turns them into wire types.
"""
