"""The GitHub Actions workflows in .github/workflows/ are valid and run what the README says.

They cannot run here (GitHub's runners, a self-hosted GPU runner, Pages), so every file is
checked against the workflow schema that check-jsonschema ships (``--builtin-schema
vendor.github-workflows``: no network), a broken workflow is shown to fail that check, and
each workflow is read with PyYAML to see that it runs the README's commands as intended.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("check-jsonschema")
    assert exe.exists(), f"check-jsonschema not installed next to {sys.executable} (requirements.txt)"
    return subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    """The ``on:`` mapping (YAML 1.1, which PyYAML reads, turns the key ``on`` into True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def runs(job: dict) -> str:
    """Every ``run:`` script of a job, one after the other."""
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def env(workflow: dict, job: dict, step: dict | None = None) -> dict:
    return {**workflow.get("env", {}), **job.get("env", {}), **((step or {}).get("env", {}))}


def test_there_are_workflows():
    assert {p.name for p in FILES} >= {"ci-cpu.yml", "ci-gpu.yml", "pages.yml"}, FILES


def test_every_workflow_passes_the_schema():
    assert FILES, f"no workflows in {WORKFLOWS}"
    result = check_jsonschema(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
                    "    steps:\n      - run: make test\n")
    assert check_jsonschema(good).returncode == 0            # the check is not vacuous ...
    broken = tmp_path / "broken.yml"
    # ... a misspelt event and a job without runs-on (`step:` for `steps:`) are caught
    broken.write_text("on: pushh\njobs:\n  test:\n    step:\n      - run: make test\n")
    result = check_jsonschema(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "broken.yml::$.on" in result.stdout and "'runs-on' is a required property" in result.stdout


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_version(path):
    for job in yaml.safe_load(path.read_text())["jobs"].values():
        for step in steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), step


def test_make_targets_the_workflows_call_exist():
    makefile = (ROOT / "Makefile").read_text()
    called = set()
    for path in FILES:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            called |= set(re.findall(r"\bmake (\w[\w-]*)", runs(job)))
    assert called >= {"install", "test", "book"}
    for target in called:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no `{target}` in Makefile"


def test_ci_cpu_runs_the_readme_test_command_with_cached_isbi_data():
    wf = load("ci-cpu.yml")
    assert {"push", "pull_request"} <= set(triggers(wf))
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert uses(job, "actions/setup-python")[0]["with"]["python-version"] == "3.11"
    script = runs(job)
    assert "bash .ci/run" in script                       # .ci/run = make test
    assert "UNET_TEACH_DATA=" in script and "../shared/data" in script
    # the slices: restored by actions/cache, keyed on their SHA256SUMS, then downloaded
    # if missing and verified
    (cache,) = uses(job, "actions/cache")
    assert cache["with"]["path"].startswith("${{ env.UNET_TEACH_DATA }}")
    assert "steps.isbi.outputs.sha256" in cache["with"]["key"]
    order = [s.get("uses", s.get("run", "")) for s in steps(job)]
    warm = next(i for i, s in enumerate(order) if "load_isbi2012()" in s)
    assert order.index(cache["uses"]) < warm < next(i for i, s in enumerate(order)
                                                     if "bash .ci/run" in s)
    assert env(wf, job)["UNET_TEACH_PROFILE"] == "fast"


def test_ci_cpu_cache_key_is_the_hash_of_the_data_modules_sha256sums():
    from unet_teach.data import ISBI_SHA256

    step = next(s for s in steps(load("ci-cpu.yml")["jobs"]["test"]) if s.get("id") == "isbi")
    pattern = re.search(r"grep -E '([^']+)'", step["run"]).group(1)
    source = (ROOT / "unet_teach" / "data.py").read_text().splitlines()
    lines = [line for line in source if re.fullmatch(pattern, line)]
    assert {tuple(line.split()[::-1]) for line in lines} == set(ISBI_SHA256.items())


def test_ci_gpu_runs_make_test_in_the_full_profile_and_keeps_the_reports():
    wf = load("ci-gpu.yml")
    (job,) = wf["jobs"].values()
    assert set(job["runs-on"]) == {"self-hosted", "linux", "gpu"}
    assert "head.repo.full_name == github.repository" in job["if"]   # no fork PRs on it
    script = runs(job)
    assert "nvidia-smi" in script and "torch.cuda.is_available()" in script
    assert script.index("nvidia-smi") < script.index("make test")
    assert "load_isbi2012()" in script
    test_step = next(s for s in steps(job) if "make test" in s.get("run", ""))
    assert env(wf, job, test_step)["UNET_TEACH_PROFILE"] == "full"
    junit = re.fullmatch(r"--junitxml=(.+)", env(wf, job, test_step)["PYTEST_ADDOPTS"]).group(1)
    (upload,) = uses(job, "actions/upload-artifact")
    assert upload["if"] == "always()"                     # a failed run's reports matter most
    kept = upload["with"]["path"].splitlines()
    assert {junit, "_build/html/reports/**", "_build/.jupyter_cache"} <= set(kept)


def test_pages_builds_the_book_on_the_gpu_and_deploys_it():
    wf = load("pages.yml")
    assert "push" in triggers(wf)
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert set(build["runs-on"]) == {"self-hosted", "linux", "gpu"}
    assert env(wf, build)["UNET_TEACH_PROFILE"] == "full"
    assert "make book" in runs(build) and "nvidia-smi" in runs(build)
    assert uses(build, "actions/configure-pages")
    assert uses(build, "actions/upload-pages-artifact")[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    (step,) = uses(deploy, "actions/deploy-pages")
    assert deploy["environment"]["url"] == f"${{{{ steps.{step['id']}.outputs.page_url }}}}"
