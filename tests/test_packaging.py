"""Packaging: the wheel `pip install .` builds holds every module, the `vtr` command and the shipped
files, and an install of it outside the checkout runs and finds those files under <prefix>/share.

Offline and real: setuptools builds the wheel from pyproject.toml (no build isolation, no index), pip
installs it into a fresh virtual environment. That environment borrows this one's dependencies
(torch, ...) through a .pth file, so nothing is downloaded, and it has its own sys.prefix, as a user's
venv would.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("setuptools", reason="building the wheel needs setuptools in this environment "
                                         "(pip install setuptools)")

COMMANDS = ["index", "search", "info", "remove", "train", "eval", "report", "accuracy", "bench"]
SHIPPED_HEADS = sorted(p.name for p in (REPO / "precomputed" / "heads").glob("*.pt"))
SHIPPED_TOWERS = sorted(p.name for p in (REPO / "precomputed" / "text_towers").glob("*.pt"))
# what pyproject.toml names: the package, the readme, the data files
BUILD_INPUTS = ["pyproject.toml", "README.md", "vtr_core", "precomputed/heads", "precomputed/text_towers",
                "docs/results.json"]


def _copy_build_inputs(target: Path) -> None:
    """pip builds a local project in place, leaving build/ and *.egg-info behind, and build/lib keeps
    modules deleted since the last build: building from a copy keeps the checkout clean and the wheel true."""
    for name in BUILD_INPUTS:
        source, dest = REPO / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest)


def _run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def _pip(*args) -> list:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VTR_DATA_DIR")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    _copy_build_inputs(root / "src")
    _run(_pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", root / "src"), cwd=root)
    (built,) = (root / "dist").glob("vtr_core-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv (its own sys.prefix) with the wheel installed; dependencies come from this environment."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=venv).stdout.strip()
    borrowed = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(purelib) / "borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", wheel], cwd=venv)
    return venv


def test_wheel_declares_the_vtr_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(name).decode())
    assert entry_points["console_scripts"]["vtr"] == "vtr_core.cli:main"


def test_wheel_holds_every_module_and_no_other(wheel):
    source = {p.relative_to(REPO).as_posix() for p in (REPO / "vtr_core").rglob("*.py") if "__pycache__" not in p.parts}
    with zipfile.ZipFile(wheel) as archive:
        packaged = {n for n in archive.namelist() if n.startswith("vtr_core/") and n.endswith(".py")}
    assert "vtr_core/cli/__init__.py" in source
    assert packaged == source


def test_wheel_holds_the_shipped_files_as_data(wheel):
    assert len(SHIPPED_HEADS) == 8 and SHIPPED_TOWERS == ["lite0-msrvtt.pt"]  # lite's and lite0:msrvtt's heads
    data = f"{wheel.name.split('-py')[0]}.data/data/share/vtr_core/"
    expected = [f"precomputed/heads/{name}" for name in SHIPPED_HEADS] + ["docs/results.json"]
    expected += [f"precomputed/text_towers/{name}" for name in SHIPPED_TOWERS]
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(n.removeprefix(data) for n in archive.namelist() if n.startswith(data)) == sorted(expected)
        for name in expected:
            assert archive.read(data + name) == (REPO / name).read_bytes(), name


def test_installed_command_lists_the_commands_like_python_m(installed, tmp_path):
    script = _run([installed / "bin" / "vtr", "--help"], cwd=tmp_path, env=_clean_env())
    for command in COMMANDS:
        assert f"    {command} " in script.stdout, script.stdout
    from_checkout = _run([sys.executable, "-m", "vtr_core", "--help"], cwd=REPO, env=_clean_env())
    assert script.stdout == from_checkout.stdout


def test_installed_package_finds_its_shipped_files_under_its_prefix(installed, tmp_path):
    probe = ("import sys, vtr_core.cli\nfrom vtr_core import resources\n"
             "print(vtr_core.cli.__file__); print(sys.prefix); print(resources.data_dir())\n"
             "print(','.join(sorted(p.name for p in resources.shipped_heads_dir().glob('*.pt'))))\n"
             "print(resources.results_json().is_file())\n"
             "from vtr_core.backbones import resolve_backbone_spec; print(resolve_backbone_spec('lite0:msrvtt'))\n"
             "from vtr_core.backbones import offline_default; print(offline_default())")
    lines = _run([installed / "bin" / "python", "-c", probe], cwd=tmp_path, env=_clean_env()).stdout.splitlines()
    module, prefix, data_dir, heads, results, _, default = lines
    assert default == "lite0:msrvtt"  # its text tower was found under the prefix
    assert Path(module).resolve().is_relative_to(installed.resolve()) and Path(prefix).resolve() == installed.resolve()
    assert Path(data_dir).resolve() == (installed / "share" / "vtr_core").resolve()
    assert heads.split(",") == SHIPPED_HEADS and results == "True"
