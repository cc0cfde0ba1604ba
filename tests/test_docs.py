"""The docs' recipes, run from the docs' own text: a doc and the code cannot drift apart.

Each test takes a fenced block out of the docs (README.md, docs/*.md,
sitecustomize_example/README.md) and runs it against the local moto STS (loopback only).
Where a recipe names a machine path (``/opt/brs-site``), the test substitutes a temporary
directory and says so. The README's sample output is compared with a real run of the demo.
Every other fenced block of the docs is accounted for below (RECIPES): run by a named
test, or not runnable here and why. The rest checks the docs against the code: the
settings table, the module map, the tested range, the front page's length.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import all_fenced, fenced, settings_table
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
    block = fenced("docs/api.md", "## The explicit API", "python")
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
    config.write_text(fenced("docs/serving.md", "**`brs-run --credential-process`**", "ini"))
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


def _table(doc: str, header: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown table that starts with ``header``."""
    text = (REPO_ROOT / doc).read_text()
    table = text[text.index(header) :].split("\n\n", 1)[0].splitlines()[2:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in table]


def test_the_settings_reference_is_the_code_table() -> None:
    variables, boolean, secret = settings_table()
    rows = _table("docs/configuration.md", "| variable | meaning | default |")
    documented = [re.fullmatch(r"`(BRS_[A-Z_]+)`", row[0]) for row in rows]
    assert all(documented), [row[0] for row in rows]
    names = [match.group(1) for match in documented if match]
    assert names == variables  # every setting, in the code's (and --help's) order
    for name, (_, meaning, default) in zip(names, rows, strict=True):
        if name in boolean:
            assert default in ("`true`", "`false`"), (name, default)
        if name in secret:
            assert "secret" in meaning, f"{name} is secret: its row must say so"


def test_the_front_page_settings_are_real_ones() -> None:
    variables, _, _ = settings_table()
    rows = _table("README.md", "| variable | meaning | default |")
    named = [name for row in rows for name in re.findall(r"`(BRS_[A-Z_]+)`", row[0])]
    assert named and set(named) <= set(variables), set(named) - set(variables)
    assert "BRS_ROLE_ARN" in named


def test_the_front_page_stays_a_front_page() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    # Every page of docs/ is linked from it, and every link into docs/ names a real page.
    linked = set(re.findall(r"\]\(docs/([a-z-]+\.md)(?:#[a-z0-9-]+)?\)", readme))
    pages = {path.name for path in (REPO_ROOT / "docs").glob("*.md")} - {"index.md", "sitecustomize.md"}
    assert linked == pages


def test_why_not_wrapt_is_findable_and_true() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "](docs/how-it-works.md#why-not-wrapt)" in readme
    assert "\n### Why not wrapt\n" in (REPO_ROOT / "docs" / "how-it-works.md").read_text()
    # What the note says: no wrapt anywhere in the package, boto3 and botocore the only dependencies.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    dependencies = pyproject[pyproject.index("dependencies = [") :].split("]", 1)[0]
    assert re.findall(r'"([a-z0-9]+)', dependencies) == ["boto3", "botocore"]
    for path in (REPO_ROOT / "brs_autopatch").rglob("*.py"):
        assert not re.search(r"^\s*(import|from) wrapt\b", path.read_text(), re.M), path


# Every fenced block of the docs: what runs it, or why nothing does. A new block must be
# added here: a recipe the docs show is either run from its text or says why it is not.
DOCS = ("README.md", *(f"docs/{p.name}" for p in sorted((REPO_ROOT / "docs").glob("*.md"))),
        "sitecustomize_example/README.md")
RECIPES: dict[tuple[str, str, str], str] = {
    ("README.md", "brs_autopatch", "console"):
        "not run: the pitch (the quickstart's demo runs brs-run)",
    ("README.md", "Quickstart", "console"):
        "scripts/demo: test_the_readme_sample_output_matches_the_demo; scripts/test: CI itself",
    ("README.md", "Quickstart", "text"):
        "test_the_readme_sample_output_matches_the_demo",
    ("README.md", "Install", "sh"):
        "not run: a clone of a URL (tests/test_packaging.py installs the wheel)",
    ("docs/api.md", "The explicit API", "python"):
        "test_the_explicit_api_block_runs_as_written",
    ("docs/api.md", "`brs_autopatch`", "{eval-rst}"):
        "the docs build (autodoc)",
    ("docs/api.md", "`brs_autopatch.methods`", "{eval-rst}"):
        "the docs build (autodoc)",
    ("docs/bench.md", "Run it", ""):
        "not run here: scripts/bench's usage (docs/bench.md is its output)",
    ("docs/bench.md", "brs-run start-up, per Python child", "text"):
        "not run here: a measurement (bench/bench_startup.py's output), not a command",
    ("docs/development.md", "The docs", "sh"):
        "test_the_documented_docs_build_is_the_stage_s",
    ("docs/how-it-works.md", "The data flow", "text"):
        "a picture; tests/test_import_graph.py checks the flow",
    ("docs/index.md", "brs_autopatch", "console"):
        "not run: the pitch, as on the front page",
    ("docs/index.md", "brs_autopatch", "{toctree}"):
        "the docs build",
    ("docs/install.md", "Install", "sh"):
        "not run: a clone of a URL; tests/test_packaging.py builds the wheel and sdist",
    ("docs/recipes.md", "Containers, services and Lambda", "sh"):
        "tests/test_lambda_wrapper.py",
    ("docs/recipes.md", "Distributed engines and process managers", "python"):
        "not from this text: tests/test_engines_spark.py, tests/engine_apps/ray_driver.py",
    ("docs/serving.md", "Tools that read an AWS config file", "ini"):
        "test_the_credential_process_profile_works_as_written",
    ("docs/serving.md", "Native clients in-process", "sql"):
        "not run: DuckDB's extensions download at run time",
    ("docs/sitecustomize.md", "Without brs-run: `.pth` and `sitecustomize.py`", "{include}"):
        "the docs build",
    ("docs/troubleshooting.md", "Bad settings: `ConfigError`", "text"):
        "test_the_config_error_examples_are_real_messages",
    ("docs/troubleshooting.md", "At request time: `CredentialRefreshError`", "text"):
        "test_the_config_error_examples_are_real_messages (its format)",
    ("docs/usage.md", "brs-run", "text"):
        "the usage line; tests/test_launcher_flags.py checks --help",
    ("sitecustomize_example/README.md", "`sitecustomize_example/`: brs_autopatch without `brs-run`", "sh"):
        "test_the_sitecustomize_example_launcher_recipe",
    ("sitecustomize_example/README.md", "Where to put it", "sh"):
        "tests/test_pth.py (placement 1), test_the_pythonpath_placement_as_written (3); 2 not run",
    ("sitecustomize_example/README.md", "Where to put it", "dockerfile"):
        "not run: no Docker on CI machines",
    ("sitecustomize_example/README.md", "Recipes with `brs-run`", "dockerfile"):
        "not run: no Docker on CI machines",
    ("sitecustomize_example/README.md", "Recipes with `brs-run`", "ini"):
        "not run: a systemd unit",
    ("sitecustomize_example/README.md", "Recipes with `brs-run`", "sh"):
        "tests/test_lambda_wrapper.py",
}


def test_every_fenced_block_of_the_docs_is_run_or_says_why_not() -> None:
    found = {(doc, heading, lang) for doc in DOCS for lang, heading, _ in all_fenced(doc)}
    assert found - set(RECIPES) == set(), "fenced blocks that no entry of RECIPES accounts for"
    assert set(RECIPES) - found == set(), "RECIPES entries whose block is gone"


def _module_map() -> dict[str, set[str]]:
    """docs/how-it-works.md's "Where the code is": folder -> the modules it names."""
    rows = _table("docs/how-it-works.md", "| folder | modules |")
    mapped: dict[str, set[str]] = {}
    for folder, modules in rows:
        name = folder.strip("`").removeprefix("brs_autopatch/").rstrip("/")
        mapped[name] = set(re.findall(r"`([a-z_]+\.py)`", modules))
    return mapped


def test_the_module_map_names_every_module() -> None:
    package = REPO_ROOT / "brs_autopatch"
    if not (package / "config").is_dir():
        pytest.skip("the map describes the subpackage layout of issue 18, not yet in this tree")
    modules: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        folder = path.parent.relative_to(package).as_posix()
        modules.setdefault("" if folder == "." else folder, set()).add(path.name)
    mapped = _module_map()
    for folder in mapped.keys() | modules.keys():
        named, there = mapped.get(folder, set()), modules.get(folder, set())
        missing = there - named - ({"__init__.py"} if folder else set())
        assert not missing, f"{folder or 'brs_autopatch'}/: modules missing from the map: {missing}"
        assert named <= there, f"{folder or 'brs_autopatch'}/: the map names absent modules: {named - there}"


def test_the_documented_tested_range_is_what_check_calls_tested() -> None:
    from brs_autopatch.launch.check import TESTED

    text = (REPO_ROOT / "docs" / "development.md").read_text()
    line = " ".join(text[text.index("**Tested range**") :].split("\n\n", 1)[0].split())

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


# --- docs/troubleshooting.md lists every message family ----------------------------------

# Calls whose first argument is a message a user can see: log records, our exceptions,
# brs-run's stderr lines. (logger.log's message is its second argument.)
_LOG_CALLS = {"warning", "error", "critical", "write"}
_PROG_NAMES = {"PROG", "prog"}


def _message_lead(node: ast.expr) -> str:
    """The fixed text a message starts with, up to its first placeholder; a leading
    ``{PROG}: `` (brs-run's prefix) is skipped."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.split(r"%[-\d.]*[sdrf]|\{", node.value)[0]
    if isinstance(node, ast.JoinedStr):
        values = list(node.values)
        if values and isinstance(values[0], ast.FormattedValue):
            name = values[0].value
            if not (isinstance(name, ast.Name) and name.id in _PROG_NAMES):
                return ""
            values = values[1:]
            if values and isinstance(values[0], ast.Constant):
                values[0] = ast.Constant(str(values[0].value).removeprefix(": "))
        lead = ""
        for value in values:
            if not isinstance(value, ast.Constant):
                break
            lead += str(value.value)
        return lead
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _message_lead(node.left)
    return ""


def message_families() -> dict[str, str]:
    """Each user-visible message's fixed start (up to 40 characters) -> where it is."""
    families: dict[str, str] = {}
    package = REPO_ROOT / "brs_autopatch"
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            method = isinstance(func, ast.Attribute)
            name = str(getattr(func, "attr", None) or getattr(func, "id", ""))
            if method and name == "log" and len(node.args) > 1:
                message = node.args[1]
            elif node.args and (
                (method and name in _LOG_CALLS and ast.unparse(func) != "sys.stdout.write")
                or (name.endswith("Error") and name not in {"AttributeError", "AssertionError", "ValueError"})
                or name in {"_error", "CheckFailed"}
            ):
                message = node.args[0]
            else:
                continue
            lead = " ".join(_message_lead(message).split())
            if len(lead) >= 8:
                cut = lead if len(lead) <= 40 else lead[:40].rsplit(" ", 1)[0]
                families.setdefault(cut, f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    return families


def test_troubleshooting_lists_every_message_family() -> None:
    page = " ".join((REPO_ROOT / "docs" / "troubleshooting.md").read_text().split())
    families = message_families()
    assert len(families) > 40, families  # the scan still finds the messages
    missing = {lead: where for lead, where in families.items() if lead not in page}
    assert not missing, f"messages missing from docs/troubleshooting.md: {missing}"


def test_the_config_error_examples_are_real_messages() -> None:
    import brs_autopatch

    role = {"BRS_ROLE_ARN": "arn:aws:iam::123456789012:role/app"}
    block = fenced("docs/troubleshooting.md", "## Bad settings", "text").splitlines()
    for line, value in zip(block, ("90", "a"), strict=True):
        name = line.split("=", 1)[0]
        with pytest.raises(brs_autopatch.ConfigError) as raised:
            brs_autopatch.from_env({**role, name: value})
        assert str(raised.value) == line
    example = fenced("docs/troubleshooting.md", "## At request time", "text").strip()
    error = brs_autopatch.CredentialRefreshError(
        "arn:aws:iam::123456789012:role/app (session app)", example.split(": ", 1)[1], transient=False
    )
    assert str(error) == example


def test_the_documented_docs_build_is_the_stage_s() -> None:
    documented = fenced("docs/development.md", "## The docs", "sh").split()
    script = (REPO_ROOT / "scripts" / "test").read_text()
    python = '"$PWD/.venv-docs/bin/python"'
    command = script[script.index(f"{python} -m sphinx") :].split("\n}", 1)[0]
    staged = command.replace("\\\n", " ").replace(python, ".venv-docs/bin/python").split()
    assert documented == staged


def test_the_api_reference_documents_the_public_names() -> None:
    import brs_autopatch
    import brs_autopatch.methods

    text = (REPO_ROOT / "docs" / "api.md").read_text()
    # (automodule:: brs_autopatch.methods introduces the module, not a name of the package)
    documented = re.findall(r"^\.\. (?!automodule)(?:auto\w+|py:data):: (brs_autopatch\.[\w.]+)", text, re.M)
    top = {name.split(".", 1)[1] for name in documented if name.count(".") == 1}
    assert top == set(brs_autopatch.__all__)  # every public name, no other
    for name in documented:  # and nothing that is not there
        module, _, attribute = name.rpartition(".")
        assert hasattr(brs_autopatch if module == "brs_autopatch" else brs_autopatch.methods, attribute), name
