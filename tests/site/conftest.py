"""The site test's fixture: a :class:`~tests.site.processes.Site` in ``tmp_path``, every process it
started killed at teardown (pass or fail), and the tail of each process's log printed when the
test failed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site.processes import Site


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    the_site = Site(tmp_path)
    try:
        yield the_site
    finally:
        if request.node.stash.get(FAILED, True):
            print(the_site.report())
        the_site.kill_all()
