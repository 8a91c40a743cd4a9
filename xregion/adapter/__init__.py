"""The regional adapter: what each region runs to take part in the bus.

>>> adapter = Adapter.from_keys_dir("BJ", Path(".xregion/keys"), nats_url="nats://...",
...                                 store_path=Path(".xregion/BJ.db"), handler=handle)
>>> await adapter.start()
>>> sent = await adapter.client.open("lead.submitted", to="TJ", data=lead.Submitted(...))
"""

from xregion.adapter.client import RegionClient
from xregion.adapter.service import Adapter
from xregion.runtime.consumer import Delivery, Handler

__all__ = ["Adapter", "Delivery", "Handler", "RegionClient"]
