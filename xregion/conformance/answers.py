"""The answer table: which events get an automatic answer, from whom, with what, which ids.

An addressee's adapter answers some events by itself, in the transaction that records the
event and hands it to the regional system (:data:`xregion.lifecycle.RECEIPTS`): a *receipt*
(``<family>.received``: "durably received and handed over") or an *acknowledgement*
(``share.acknowledged``, ``recognition.revocation_acknowledged``: "received and applied").
Every other event gets no automatic answer: what follows it is the regional systems'
business, within the lifecycle.

:func:`answer_table` is the table as data. It is committed as
``schemas/conformance/answers.json`` (written by ``xregion conformance generate``),
docs/signing-recipe.md §10 shows it as :func:`markdown`, and the tests hold the three
together and check on a real bus that every event type gets exactly these answers.
"""

from __future__ import annotations

import json
from typing import Any

from xregion.contracts.catalog import CATALOG, Catalog
from xregion.lifecycle import LIFECYCLES, RECEIPTS, Role

RECEIPT = "receipt"
ACKNOWLEDGEMENT = "acknowledgement"

IDS: dict[str, str] = {
    "subject": "the answered event's subject (the referral id)",
    "correlationid": "the answered event's correlationid",
    "causationid": "the answered event's id",
    "addressee": "the answered event's sender",
}
"""The ids of every automatic answer, in terms of the event it answers."""


def _sent_by(family: str, event: str) -> str:
    lifecycle = LIFECYCLES[family]
    if lifecycle.senders == "coordinator":
        return "coordinator"
    return "origin" if lifecycle.role_of(event) is Role.ORIGIN else "addressee"


def answer_table(catalog: Catalog = CATALOG, version: int = 1) -> dict[str, Any]:
    """The table as a JSON document: one row per event type of contract ``version``."""
    rows = []
    for kind in catalog.versions(version):
        answer = RECEIPTS.get(kind.name)
        row: dict[str, Any] = {"event": kind.name, "sent_by": _sent_by(kind.family, kind.event)}
        if answer is None:
            row.update(answered_by=None, answer=None, data=None, kind=None)
        else:
            answer_type, data = answer
            row.update(
                answered_by="addressee",
                answer=answer_type,
                data=dict(data),
                kind=RECEIPT if answer_type.endswith(".received") else ACKNOWLEDGEMENT,
            )
        rows.append(row)
    return {
        "version": version,
        "about": "Automatic answers of an addressee's adapter (docs/signing-recipe.md §10). answered_by "
        "'addressee' means every region the event is addressed to: the addressee, or every region but "
        "the sender for ALL. An answer is sent once per event and answering region, after the event is "
        "durably recorded and handed to the regional system; events with answer null get none.",
        "ids": IDS,
        "events": rows,
    }


def markdown(table: dict[str, Any]) -> str:
    """The table as the recipe shows it between its ``answers:begin`` and ``answers:end``
    markers: one line per event type, then the answers' ids (no trailing newline)."""
    lines = [
        "| event | sent by | answered automatically by | answer (`data`) | kind |",
        "|---|---|---|---|---|",
    ]
    for row in table["events"]:
        if row["answer"] is None:
            lines.append(f"| `{row['event']}` | {row['sent_by']} | — | — | — |")
            continue
        data = json.dumps(row["data"], ensure_ascii=False, separators=(", ", ": "))
        lines.append(
            f"| `{row['event']}` | {row['sent_by']} | {row['answered_by']} | "
            f"`{row['answer']}` (`{data}`) | {row['kind']} |"
        )
    lines += ["", "| id of the answer | is |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in table["ids"].items()]
    return "\n".join(lines)
