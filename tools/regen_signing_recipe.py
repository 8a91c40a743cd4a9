"""Recompute the worked example of docs/signing-recipe.md from its ``unsigned`` block.

Run after a change to the envelope: ``python tools/regen_signing_recipe.py``. The test
tests/unit/test_signing_recipe.py checks the result against the code.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from xregion.signing import Signer, canonical, event_hash

DOC = Path(__file__).resolve().parents[1] / "docs" / "signing-recipe.md"
BLOCK = re.compile(r"(<!-- recipe:(?P<name>[a-z0-9-]+) -->\n```(?P<lang>\w+)\n)(?P<body>.*?)(\n```)", re.S)


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
    seed = bytes.fromhex(blocks["seed"].strip())
    signer = Signer.from_seed("BJ", seed)
    unsigned = json.loads(blocks["unsigned"])
    unsigned["keyid"] = signer.key_id
    signed = signer.sign(unsigned)
    canon = canonical({k: v for k, v in signed.items() if k != "signature"})
    values = {
        "unsigned": json.dumps(unsigned, ensure_ascii=False, indent=2),
        "canonical": canon.decode("utf-8"),
        "canonical-sha256": hashlib.sha256(canon).hexdigest(),
        "signature": signed["signature"],
        "event": json.dumps(signed, ensure_ascii=False, indent=2),
        "event-hash": event_hash(signed),
        "key-id": signer.key_id,
    }
    text = BLOCK.sub(lambda m: m.group(1) + values.get(m["name"], m["body"]) + m.group(5), text)
    text = re.sub(r"without a line break at the end \(\d+ bytes\)", f"without a line break at the end ({len(canon)} bytes)", text)
    DOC.write_text(text, encoding="utf-8")
    print(f"updated {DOC}: {len(canon)} canonical bytes, signature {signed['signature'][:16]}...")


if __name__ == "__main__":
    main()
