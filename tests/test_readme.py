"""The README's Python example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_python_example_runs(monkeypatch, capsys):
    example = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(ROOT)
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("schedule inception_v3: 119 operators in")


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in lines[2:4]]
    assert commands == [
        "python3 -m pip install -e . && snakemake --cores 1 all",
        "command -v chromedriver >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        'chromium chromium-driver) >/dev/null 2>&1 || true; python3 -m pip install -e ".[test]" && python3 -m pytest',
    ]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
