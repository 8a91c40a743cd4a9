"""The coordinator: a projection of every referral, working-day deadlines, escalation.

* :mod:`xregion.coordinator.calendar`   — working-day arithmetic (Chinese official calendar)
* :mod:`xregion.coordinator.projection` — the read model (SQLite), rebuildable from the stream
* :mod:`xregion.coordinator.escalation` — reminders and overdue escalations, exactly once
* :mod:`xregion.coordinator.service`    — the running coordinator (COORD identity)
"""
