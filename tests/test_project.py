"""The project's own files: docs that match the code, settings that must hold, tools that must accept them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from etcd_stack import config
from etcd_stack.preview.offline import PROJECT_DIR

README = (PROJECT_DIR / "README.md").read_text()
BIN = Path(sys.executable).parent


def readme_table(first_header: str) -> dict[str, list[str]]:
    rows = {}
    in_table = False
    for line in README.splitlines():
        if line.startswith(f"| {first_header} |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_readme_config_table_lists_every_key_with_its_default():
    table = readme_table("key")
    assert list(table) == [f"etcd:{key.name}" for key in config.KEYS]
    for key in config.KEYS:
        meaning, default = table[f"etcd:{key.name}"]
        assert meaning == key.meaning
        assert default == ("—" if key.default is None else f"`{key.default}`")


def test_readme_outputs_table_lists_every_stack_output(run_stack):
    outputs = set(run_stack(bastion=False).outputs)
    assert set(readme_table("output")) == outputs


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    commands = re.findall(r"^(make \w+)\s+#", README, flags=re.MULTILINE)
    assert commands[:2] == ["make sandbox", "make test"]
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_pytest_keeps_native_tracebacks():
    settings = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())
    assert "--tb=native" in settings["tool"]["pytest"]["ini_options"]["addopts"].split()


def test_the_package_exposes_the_etcd_stack_command_and_a_test_extra():
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"etcd-stack": "etcd_stack.cli:main"}
    assert any(requirement.startswith("pytest") for requirement in project["optional-dependencies"]["test"])


def test_pulumi_project_runs_python_in_the_virtualenv():
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == "etcd-aws"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"


def test_the_dev_stack_is_three_members_in_london():
    raw = config.from_stack_file(yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text()))
    cfg = config.load(raw, "dev")
    assert (cfg.region, cfg.cluster_size) == ("eu-west-2", 3)


def test_code_passes_ruff():
    ruff = shutil.which("ruff", path=str(BIN)) or shutil.which("ruff")
    result = subprocess.run([ruff, "check", "--no-cache", str(PROJECT_DIR)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_shellcheck_passes_the_project_scripts():
    scripts = [PROJECT_DIR / ".ci" / "run", PROJECT_DIR / "scripts" / "install-test-tools"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_github_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    assert actionlint, "actionlint comes with the test extra"
    workflows = sorted((PROJECT_DIR / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run([actionlint, "-no-color", *map(str, workflows)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def test_the_workflow_runs_the_tests_and_a_pulumi_preview():
    workflow = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(step.get("run") == "make test" for step in steps)
    preview = workflow["jobs"]["preview"]
    runs = [step.get("run", "") for step in preview["steps"]]
    assert [r for r in runs if r.startswith("pulumi preview")] == [
        'pulumi preview --stack "$PULUMI_STACK" --policy-pack policy --diff --non-interactive']
    installed = [step for step in preview["steps"] if step.get("uses", "").startswith("pulumi/actions@")]
    assert len(installed) == 1 and "with" not in installed[0], "the action only installs the CLI"


def test_the_preview_waits_for_approval_and_installs_only_what_runs():
    workflow = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / "ci.yml").read_text())
    preview = workflow["jobs"]["preview"]
    assert preview["environment"] == "aws-preview"
    assert preview["permissions"] == {"contents": "read", "id-token": "write"}
    script = "\n".join(step.get("run", "") for step in preview["steps"])
    assert "-r requirements.txt" in script and "[test]" not in script and "make " not in script
    lines = (PROJECT_DIR / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == ["-e ."], "the project, no extras"


def test_every_action_is_pinned_by_a_full_commit():
    workflow = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / "ci.yml").read_text())
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
