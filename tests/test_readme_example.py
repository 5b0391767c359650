"""The README's "Your data and your model" example runs as it stands: its file blocks are laid
out in an empty folder outside the repository and its bash block is run there, with the
installed suite (this interpreter's environment first on PATH) and a fresh store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Your data and your model"
FILE_LINE = re.compile(r"^# file: (\S+)\n")


def example(readme: str) -> tuple[dict[str, str], str]:
    """The section's files (name -> text, from blocks opening with ``# file: NAME``) and its commands."""
    if SECTION not in readme:
        raise AssertionError(f"the README has no section {SECTION!r}")
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files, commands = {}, []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        named = FILE_LINE.match(body)
        if named:
            files[named.group(1)] = body
        elif language == "bash":
            commands.append(body)
    return files, "".join(commands)


def test_the_readme_example_runs_prints_one_verdict_twice_and_writes_both_reports(tmp_path):
    files, commands = example((ROOT / "README.md").read_text())
    assert set(files) == {"my_model.py", "test_my_claim.py"} and "pytest" in commands
    folder = tmp_path / "empty"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "MEMSUITE_STORE": str(tmp_path / "store"), "PYTHONPATH": ""}
    environment.pop("MEMSUITE_PROFILE", None)
    ran = subprocess.run(["bash", "-c", commands], cwd=folder, env=environment, capture_output=True, text=True,
                         timeout=900)
    output = ran.stdout + ran.stderr
    from_pytest = re.findall(r"^memsuite: (fz-long-tail/my-mlp on my-digits: [A-Z]+),", output, flags=re.M)
    from_cli = re.findall(r"^(fz-long-tail/my-mlp on my-digits: [A-Z]+),", output, flags=re.M)
    assert len(from_pytest) == 1 and from_cli == from_pytest, output[-3000:]
    assert "1 run(s) reused" in output, output[-3000:]
    for reports in ("reports", "reports-cli"):
        claim = folder / reports / "fz-long-tail"
        assert {path.suffix for path in claim.iterdir()} == {".json", ".md", ".png"}
        assert json.loads(next(claim.glob("*.json")).read_text())["verdict"] in from_pytest[0].lower()
