"""The CLI imports a command's module only when that command runs; every command must still be found."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from stubforge.cli import _COMMAND_MODULES, cli

CLI_DIR = Path(__file__).resolve().parents[2] / "stubforge" / "cli"


def test_every_registered_command_is_mapped_to_its_module() -> None:
    registered = {}
    for module in CLI_DIR.glob("*.py"):
        for name in re.findall(r'@cli\.(?:command|group)\("([^"]+)"', module.read_text()):
            registered[name] = module.stem
    assert registered == _COMMAND_MODULES


def test_help_lists_every_command_and_each_has_its_own_help() -> None:
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0
    for name in _COMMAND_MODULES:
        assert re.search(rf"^  {re.escape(name)}\s", listed.output, re.M), name
        assert CliRunner().invoke(cli, [name, "--help"]).exit_code == 0, name


def test_a_command_loads_its_own_module_only() -> None:
    code = (
        "import sys; from stubforge.cli import main; sys.argv = ['stubforge', 'param', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('stubforge.cli.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "['stubforge.cli.envs']"
