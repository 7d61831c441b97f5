"""docs/reliability.md is the suite's own case list, rendered: it cannot drift from the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cases import CASES, CLAIMED, all_case_ids
from tests.faults.report import DOC, render

HERE = Path(__file__).parent


def test_reliability_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run: python -m tests.faults.report"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_case_is_claimed_by_a_test(request: pytest.FixtureRequest) -> None:
    claimed = request.config.stash.get(CLAIMED, {})
    modules = {p.name for p in HERE.glob("test_*.py")} - {"test_report.py"}
    if set(claimed) != modules:
        pytest.skip("only part of tests/faults was collected; the check needs all of it")
    unclaimed = sorted(all_case_ids() - set().union(*claimed.values()))
    assert not unclaimed, f"cases no test checks: {unclaimed}"
