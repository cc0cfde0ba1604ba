"""The docs' recipes, run from the docs' own text: a doc and the code cannot drift apart.

Each test takes a fenced block out of README.md or sitecustomize_example/README.md and
runs it against the local moto STS (loopback only). Where a recipe names a machine path
(``/opt/brs-site``), the test substitutes a temporary directory and says so. The README's
sample output is compared with a real run of the demo.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import fenced
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, RunPython, StsServer, child_base_env, child_env

BIN = Path(sys.executable).parent  # brs-run and the AWS CLI v1 of the test venv


def _shell(
    script: str, aws_env: dict[str, str], tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = child_env(aws_env, tmp_path, bin_dir=BIN, overrides=extra)
    return subprocess.run(
        ["sh", "-ec", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_the_explicit_api_block_runs_as_written(sts: StsServer, run_python: RunPython) -> None:
    block = fenced("README.md", "## The explicit API", "python")
    # The block ends on an expression whose value its comment states: print it.
    last = block.rstrip().splitlines()[-1]
    expression, _, promised = last.partition("#")
    program = block + f"\nprint({expression.strip()})\n"
    result = run_python(program, check=True)
    arn = result.stdout.strip().splitlines()[-1]
    assert promised.strip().strip(".") in arn  # ":assumed-role/app/"
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/app/")
    (call,) = sts.calls("sts:AssumeRole")
    assert call["params"]["DurationSeconds"] == "900" and call["region"] == "eu-west-1"


def test_the_credential_process_profile_works_as_written(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text(fenced("README.md", "**`brs-run --credential-process`**", "ini"))
    result = _shell(
        "aws sts get-caller-identity --profile app --query Arn --output text",
        aws_env,
        tmp_path,
        AWS_CONFIG_FILE=str(config),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("arn:aws:sts::123456789012:assumed-role/app/")


def test_the_sitecustomize_example_launcher_recipe(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    block = fenced("sitecustomize_example/README.md", "Try it with the launcher first", "sh")
    result = _shell(block, aws_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The block's last comment is a sample line of the app's output: the real one matches it.
    sample = [line[2:] for line in block.splitlines() if line.startswith("# ")][-1]
    pattern = re.escape(sample).replace(r"brs\-autopatch\.myhost", r"brs-autopatch\.\S+")
    pattern = pattern.replace(r"\.\.\.7QXA", r"\.\.\.\w{4}")
    lines = [line for line in result.stdout.splitlines() if re.fullmatch(r"\d+/3 .*", line)]
    assert len(lines) == 3 and re.fullmatch(pattern, lines[0]), (sample, result.stdout)
    assert "result" in result.stdout and "OK" in result.stdout  # brs-run --check's last line


def test_the_pythonpath_placement_as_written(sts: StsServer, aws_env: dict[str, str], tmp_path: Path) -> None:
    block = fenced("sitecustomize_example/README.md", "**3. A directory on `PYTHONPATH`**", "sh")
    site = tmp_path / "brs-site"
    assert "/opt/brs-site" in block
    script = block.replace("/opt/brs-site", str(site))  # no write outside the test's directory
    script += (
        f'\nexport PYTHONPATH="$PYTHONPATH:{REPO_ROOT}"'
        "\nDEMO_CALLS=1 DEMO_INTERVAL=0 python sitecustomize_example/app.py\n"
    )
    result = _shell(script, aws_env, tmp_path, BRS_ROLE_ARN="arn:aws:iam::123456789012:role/site")
    assert result.returncode == 0, result.stderr
    assert "assumed-role/site/" in result.stdout
    assert (site / "sitecustomize.py").read_text() == (
        REPO_ROOT / "sitecustomize_example" / "sitecustomize.py"
    ).read_text()
    assert FAKE_SOURCE_ACCESS_KEY_ID not in [c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")]


def _shape(line: str) -> str:
    """A sample line as a pattern: numbers, times and key suffixes may differ."""
    marked = re.sub(r"\.\.\.[A-Z0-9]{4}\b", "...KEYSUFFIX", line)  # key ...HDQ5
    pattern = re.sub(r"\d+", r"\\d+", re.escape(marked))
    return pattern.replace("KEYSUFFIX", "[A-Z0-9]{4}")


@pytest.mark.slow
def test_the_readme_sample_output_matches_the_demo() -> None:
    sample = fenced("README.md", "The demo runs", "text").splitlines()
    demo = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=child_base_env(),
    )
    assert demo.returncode == 0, demo.stderr
    real = (demo.stderr + demo.stdout).splitlines()
    for line in sample:
        if line == "...":
            continue
        assert any(re.fullmatch(_shape(line), got) for got in real), (line, real)


def test_the_readme_table_lists_every_variable_of_the_code_table() -> None:
    from brs_autopatch.config.variables import VARIABLES

    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("| variable | meaning | default |") :].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(BRS_[A-Z_]+)` \|", table, re.M)
    assert sorted(documented) == sorted(VARIABLES)


def _readme_paragraph(start: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return text[text.index(start) :].split("\n\n", 1)[0]


def test_the_readme_module_map_names_every_module() -> None:
    mapped = set(re.findall(r"`([a-z_/]+(?:\.py)?)`", _readme_paragraph("* Modules follow the data flow")))
    package = REPO_ROOT / "brs_autopatch"
    modules = {path.stem for path in package.glob("*.py")} - {"__init__", "__main__", "_version"}
    modules |= {f"{sub.name}/{path.name}" for sub in package.iterdir() if sub.is_dir()
                for path in sub.glob("*.py") if path.stem != "__init__"}
    assert modules - mapped == set(), "modules missing from the README's module map"


def test_the_readme_tested_range_is_what_check_calls_tested() -> None:
    from brs_autopatch.launch.check import TESTED

    line = " ".join(_readme_paragraph("**Tested range**").split())

    def span(name: str, dash: str = "\N{EN DASH}") -> str:
        low, high = TESTED[name]
        low_text, high_text = ".".join(map(str, low)), ".".join(map(str, high))
        return low_text if low == high else f"{low_text}{dash}{high_text}"

    assert f"boto3/botocore {span('boto3')}," in line and TESTED["boto3"] == TESTED["botocore"]
    for name in ("aiobotocore", "aioboto3", "s3fs"):
        assert f"{name} {span(name)}" in line, (name, span(name), line)
    # pyproject.toml's comment says the same (the dependency pins' reason).
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert f"boto3/botocore {span('boto3', '-')};" in pyproject
    assert f"aiobotocore {span('aiobotocore', '-')}" in pyproject
