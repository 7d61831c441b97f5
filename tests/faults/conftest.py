"""Every fault test claims case ids of tests/faults/cases.py (`@pytest.mark.fault("id")`); an
unknown or missing id fails collection, so the case list (and docs/reliability.md, rendered
from it) stays the list of what the suite really tries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cases import CLAIMED

HERE = Path(__file__).parent


@pytest.fixture
def ov(demo_artefacts: dict[str, Path]) -> str:
    """The session's tiny OpenVINO FP32 artefact (tests/conftest.py), as an --engine argument."""
    return str(demo_artefacts["openvino"])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(*ids): the fault cases (tests/faults/cases.py) a test checks")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.faults.cases import all_case_ids

    known = all_case_ids()
    claimed: dict[str, set[str]] = {}  # module file name -> ids its collected tests claim
    problems = []
    for item in items:
        path = Path(str(item.fspath))
        if path.parent != HERE or path.name == "test_report.py":
            continue
        ids = [i for mark in item.iter_markers("fault") for i in mark.args]
        if not ids:
            problems.append(f"{item.nodeid}: no @pytest.mark.fault(case id)")
        for case_id in ids:
            if case_id not in known:
                problems.append(f"{item.nodeid}: unknown fault case {case_id!r} "
                                "(add it to tests/faults/cases.py)")
            claimed.setdefault(path.name, set()).add(case_id)
    if problems:
        raise pytest.UsageError("fault suite: " + "; ".join(problems))
    config.stash[CLAIMED] = claimed
