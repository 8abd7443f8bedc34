"""The shape of the code, checked so it stays true: sizes, layering, contracts in one place, docs.

These read the source (ast), they run nothing: a module over 500 lines, a function over 80, a
head named outside `methods/`, another object's private attribute, or a docstring citing notes
that are not in this repository fails here with the place to look.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "vtr_core"
SOURCES = sorted(PACKAGE.rglob("*.py")) + [REPO / "app.py"]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
HEAD_CLASSES = {"MeanPooling", "S3MA", "EERCF", "CAMoE"}
SUBPACKAGES = {"backbones", "cli", "explorer", "index", "indexing", "methods", "retrieval", "studies", "training",
               "video"}


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_folders_show_the_architecture():
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert found == SUBPACKAGES
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "contracts.py", "errors.py", "resources.py", "storage.py"]


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_modules_and_functions_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{relative(path)} has {lines} lines (at most {MAX_MODULE_LINES})"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(parsed(path)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{relative(path)}: over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def names_used(tree: ast.Module) -> set[str]:
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    return names


def test_no_head_is_named_outside_methods():
    """One interface for all methods: only the registry knows the head classes."""
    offenders = [f"{relative(p)}: {sorted(names_used(parsed(p)) & HEAD_CLASSES)}"
                 for p in SOURCES if "methods" not in p.relative_to(REPO).parts and names_used(parsed(p)) & HEAD_CLASSES]
    assert not offenders


def imported_modules(tree: ast.Module) -> set[str]:
    return {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names}


def test_no_private_attribute_of_another_object_is_used():
    """Layers talk through public methods (an index's rows through `row_of`, not `_row_of_id`)."""
    offenders = []
    for path in SOURCES:
        tree = parsed(path)
        outside = imported_modules(tree) - {"vtr_core"}  # third-party modules' own names are theirs to keep
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and re.match(r"_[a-z]", node.attr):
                base = node.value
                if isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in outside):
                    continue
                offenders.append(f"{relative(path)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders


def test_the_invariants_are_checked_in_one_place():
    """Queries are cleaned and backbone/index/head compatibility is checked in vtr_core/contracts.py."""
    for path in SOURCES:
        if path.name == "contracts.py":
            continue
        text = path.read_text()
        assert "isprintable" not in text, f"{relative(path)} cleans text itself: use contracts.clean_query"
        assert "MAX_QUERY_CHARS =" not in text, f"{relative(path)} defines its own query limit"
        assert not re.search(r"backbone_id\s*!=", text), f"{relative(path)} compares backbone ids itself"


def test_library_errors_do_not_name_command_line_flags():
    """The CLI and the app add their flag names (VtrError.setting); the library speaks of settings."""
    library = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts
               and "studies" not in p.relative_to(PACKAGE).parts]
    offenders = []
    for path in library:
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                message = " ".join(part.value for part in ast.walk(node.exc)
                                   if isinstance(part, ast.Constant) and isinstance(part.value, str))
                if re.search(r"(^|\s)--[a-z]", message):
                    offenders.append(f"{relative(path)}:{node.lineno} {message[:80]}")
    assert not offenders


def test_docs_cited_by_the_code_are_in_this_repository():
    cited = set()
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"(?<!docs/)\b(METHODS|DESIGN)\.md", text), f"{relative(path)} cites notes outside docs/"
        assert "shared/docs" not in text, f"{relative(path)} cites notes outside this repository"
        cited |= set(re.findall(r"docs/([A-Z][A-Z_]*\.md)", text))
    assert {"METHODS.md"} <= cited
    missing = sorted(name for name in cited if not (REPO / "docs" / name).is_file())
    assert not missing


def test_method_sections_cited_exist():
    sections = set(re.findall(r"^#+ §(\d+)", (REPO / "docs" / "METHODS.md").read_text(), re.M))
    for path in SOURCES:
        for number in re.findall(r"docs/METHODS\.md §(\d+)", path.read_text()):
            assert number in sections, f"{relative(path)} cites docs/METHODS.md §{number}, which has no such section"


def test_readme_layout_lists_every_module():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Results")]
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    missing = [relative(p) for p in modules
               if not re.search(rf"^\s+{re.escape(str(p.relative_to(PACKAGE)))}\s", layout, re.M)]
    assert not missing, f"README's layout section does not list {missing}"
