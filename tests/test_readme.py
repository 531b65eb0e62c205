"""The README stays a newcomer's page, and the documentation's links and settings stay true.

The README once grew to 57 KB with its configuration table at the very end; the long sections now
live in ``docs/``. These tests keep it that way: the README stays under 25,000 bytes and keeps the
sections a newcomer looks for, every relative link in the README and in ``docs/`` (and in the
examples' READMEs) names a file that exists — a moved module or page breaks a test, not a reader's
click — the configuration table lists every ``VARY_*`` setting :mod:`api.settings` reads, and
nothing it does not, and every dependency in pyproject.toml says why it is there.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETTINGS_SOURCE = ROOT / "api" / "settings.py"
README_MAX_BYTES = 25_000

#: ``[text](target)`` and ``![alt](target)``, with an optional ``"title"``; the text may hold ``code``.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_SETTING = re.compile(r"\bVARY_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
#: A requirement's distribution name with its extras: ``redis[hiredis]>=5.0`` → ``redis[hiredis]``.
_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(?:\[[^\]]*\])?")


def _documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").glob("*/README*.md"))]


def _relative_links(path: Path) -> list[str]:
    """Link targets outside fenced code blocks that point into the repository."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith(("#", "//")):
            continue  # http(s), mailto, …, and anchors within the page
        targets.append(target)
    return targets


def _section(markdown: str, title: str) -> str:
    """The body of the ``## <title>…`` section, up to the next heading of level 2 or above."""
    match = re.search(rf"^## {re.escape(title)}[^\n]*\n(.*?)(?=^#{{1,2}} |\Z)", markdown, re.DOTALL | re.MULTILINE)
    assert match is not None, f"README.md has no '## {title}' section"
    return match.group(1)


def _settings_fields() -> set[str]:
    return {f"VARY_{name.upper()}" for name in Settings.__struct_fields__}


def _settings_mentioned_in_code() -> set[str]:
    """``VARY_*`` names in string literals of api/settings.py (error messages, pass-through lists)."""
    tree = ast.parse(SETTINGS_SOURCE.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.update(_SETTING.findall(node.value))
    return names


def _configuration_table() -> str:
    section = _section(README.read_text(encoding="utf-8"), "Configuration")
    return "\n".join(line for line in section.splitlines() if line.lstrip().startswith("|"))


def test_readme_is_under_25_kb() -> None:
    size = README.stat().st_size
    assert size < README_MAX_BYTES, f"README.md is {size:,} bytes; move long sections into docs/"


@pytest.mark.parametrize("title", ["Configuration", "Layout", "Dependencies"])
def test_readme_has_the_newcomer_sections(title: str) -> None:
    _section(README.read_text(encoding="utf-8"), title)


def test_readme_links_into_docs() -> None:
    linked = {target.split("#")[0] for target in _relative_links(README)}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("document", _documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(document: Path) -> None:
    missing = []
    for target in _relative_links(document):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (document.parent / path).exists():
            missing.append(target)
    assert not missing, f"{document.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_configuration_table_lists_every_setting() -> None:
    table = set(_SETTING.findall(_configuration_table()))
    missing = _settings_fields() - table
    assert not missing, f"README's configuration table lacks {sorted(missing)} (read in api/settings.py)"


def test_configuration_section_names_every_variable_settings_mentions() -> None:
    section = set(_SETTING.findall(_section(README.read_text(encoding="utf-8"), "Configuration")))
    missing = _settings_mentioned_in_code() - section
    assert not missing, f"README's Configuration section does not mention {sorted(missing)}"


def test_configuration_table_names_only_real_settings() -> None:
    unknown = set(_SETTING.findall(_configuration_table())) - _settings_fields()
    assert not unknown, f"README's configuration table lists {sorted(unknown)}, which api/settings.py does not read"


def test_dependencies_section_names_every_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *(r for group in project["optional-dependencies"].values() for r in group)]
    names = {_REQUIREMENT_NAME.findall(requirement)[0] for requirement in requirements}
    section = _section(README.read_text(encoding="utf-8"), "Dependencies")
    missing = sorted(name for name in names if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", section))
    assert not missing, f"README's Dependencies section does not say why {missing} are needed"


def test_security_doc_covers_every_fault_and_cites_real_tests() -> None:
    """docs/security.md: the threat model, one section per fault of issue #17, and every test it cites exists."""
    text = (ROOT / "docs" / "security.md").read_text()
    assert "## Threat model" in text
    for number in range(1, 12):
        assert re.search(rf"^## {number}\. ", text, re.M), f"docs/security.md has no section {number}"
    cited = set(re.findall(r"`(tests/[\w/]+\.py)(?:::\w+)?", text))
    assert cited, "docs/security.md cites no tests"
    missing = sorted(path for path in cited if not (ROOT / path).is_file())
    assert missing == [], f"docs/security.md cites test files that do not exist: {missing}"
