"""Every shared fixture is named by some test: a real output nobody parses is a machine nobody checked.

A file counts as covered when its name appears in a tests/**/*.py file other than this one (the per-tool
expectation tables name them). PENDING lists the files whose parser is still being written; each issue's
engineer removes its entries as the parser lands, and this test fails for an entry that is already covered.
"""

from __future__ import annotations

import re

from tests.paths import LAB_FIXTURES, REAL_FIXTURES, REPO_ROOT

# Fixtures that arrived before their parser, relative to ../shared/fixtures.
PENDING: set[str] = set()


def fixtures() -> list[str]:
    """Every fixture file, relative to ../shared/fixtures (PROVENANCE.md and the lab's README.md describe the
    fixtures; they are none)."""
    root = REAL_FIXTURES.parent
    found = [*REAL_FIXTURES.rglob("*"), *LAB_FIXTURES.rglob("*")]
    documentation = {REAL_FIXTURES / "PROVENANCE.md", LAB_FIXTURES / "README.md"}
    return sorted(
        str(path.relative_to(root)) for path in found if path.is_file() and path not in documentation
    )


def source_of_tests() -> str:
    """The source of every test module but this one."""
    this = REPO_ROOT / "tests" / "audit" / "test_fixture_coverage.py"
    return "\n".join(path.read_text() for path in sorted((REPO_ROOT / "tests").rglob("*.py")) if path != this)


def named(name: str, text: str) -> bool:
    """Whether the file name appears in the text as a whole name (not inside a longer one)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) is not None


def test_every_fixture_is_named_by_a_test():
    text = source_of_tests()
    covered = {path for path in fixtures() if named(path.rsplit("/", 1)[-1], text)}
    assert sorted(set(fixtures()) - covered - PENDING) == []  # a new fixture: name it in a test


def test_pending_fixtures_exist_and_are_not_covered_yet():
    text = source_of_tests()
    assert sorted(PENDING - set(fixtures())) == []  # a PENDING entry that is no fixture
    # a test names it now: remove it from PENDING
    assert sorted(path for path in PENDING if named(path.rsplit("/", 1)[-1], text)) == []
