"""The SQL outbox/inbox bridge for case systems that can only write to database tables."""

from xregion.bridge.bridge import SqlBridge
from xregion.bridge.dialect import Database, connect

__all__ = ["Database", "SqlBridge", "connect"]
