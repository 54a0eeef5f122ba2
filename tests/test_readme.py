"""CI runs exactly the README's install and test commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_one_install_and_one_test_command():
    install, test = quickstart_commands()
    assert install.startswith("pip install ") and "jupyter lab" in install
    assert test == "pytest"


def test_ci_runs_the_readme_commands():
    install, test = quickstart_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install.split(" && ")[0] in ci_lines
    assert test in ci_lines
