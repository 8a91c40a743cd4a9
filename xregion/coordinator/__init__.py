"""The coordinator: a projection of every referral, working-day deadlines, escalation.

* :mod:`xregion.coordinator.calendar`   — working-day arithmetic (Chinese official calendar)
* :mod:`xregion.coordinator.projection` — the read model (SQLite), rebuildable from the stream
* :mod:`xregion.coordinator.escalation` — reminders and overdue escalations, exactly once
* :mod:`xregion.coordinator.service`    — the running coordinator (COORD identity)
* :mod:`xregion.coordinator.waitlog`    — the history of the projection's deadline clocks
* :mod:`xregion.coordinator.assessment` — performance per region and pair, from the projection
* :mod:`xregion.coordinator.incidents`  — every region's dead letters and security alerts (XREGION_DLQ)
"""
