"""The validation plan: every bad value refused up front, the same way on every way in.

One table of bad values (issue 10, F, and more). Each is tried in fresh processes:
``brs-run`` (exit 2, one line, the program never starts), ``import botocore`` then
``import brs_autopatch`` (ConfigError from the import), ``import brs_autopatch`` then
``import boto3`` (ConfigError from the boto3 import, again on a second try), and
``BRS_ON_ERROR=warn`` (one warning, the program runs unpatched). Values that only the
program's own code can judge (a custom method's module that exits or raises, a
plugin that does not load) are located by the launcher and refused by the program's
plan as botocore is imported.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from launching import MODULE, ROLE, SESSION, Launch
from stsclient import DEFAULT_ACCOUNT_ID, REPO_ROOT, RunPython, StsServer

from brs_autopatch import ConfigError, plan
from brs_autopatch.config import client_config as config_values
from brs_autopatch.config import variables as environment
from brs_autopatch.config.from_env import from_env
from brs_autopatch.config.settings import Settings
from brs_autopatch.util import importer

ASSUMED = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-test-role/{SESSION}"
Setup = Callable[[Path], dict[str, str]]


def _env(**values: str) -> Setup:
    return lambda _tmp: dict(values)


def _client(**kwargs: Any) -> Setup:
    return _env(BRS_STS_CLIENT_KWARGS=json.dumps(kwargs))


def _config(**options: Any) -> Setup:
    return _client(config=options)


def _kwargs(**params: Any) -> Setup:
    return _env(BRS_ASSUME_ROLE_KWARGS=json.dumps(params))


def _module(name: str, source: str, attr: str = "get") -> Setup:
    def setup(tmp: Path) -> dict[str, str]:
        (tmp / "mods").mkdir(exist_ok=True)
        (tmp / "mods" / f"{name}.py").write_text(textwrap.dedent(source))
        return {
            "BRS_METHOD": "custom",
            "BRS_CUSTOM_METHOD": f"{name}:{attr}",
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp / 'mods'}",
        }

    return setup


def _plugin(source: str) -> Setup:
    """An installed plugin ``brs-broken`` (a dist-info on PYTHONPATH) whose module is ``source``."""

    def setup(tmp: Path) -> dict[str, str]:
        root = tmp / "plugin"
        info = root / "brs_broken_plugin-0.1.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brs-broken-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[brs_autopatch.methods]\nbrs-broken = brs_broken_plugin:method\n"
        )
        (root / "brs_broken_plugin.py").write_text(textwrap.dedent(source))
        return {"BRS_METHOD": "brs-broken", "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{root}"}

    return setup


def _cache(make: Callable[[Path], Path]) -> Setup:
    return lambda tmp: {"BRS_CACHE_DIR": str(make(tmp))}


def _regular_file(tmp: Path) -> Path:
    path = tmp / "cache-file"
    path.write_text("")
    return path


def _under_a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("")
    return tmp / "a-file" / "a" / "b"  # to be created under something that is no directory


def _symlink(tmp: Path) -> Path:
    target = tmp / "elsewhere"
    target.mkdir(mode=0o700, exist_ok=True)
    link = tmp / "cache-link"
    link.symlink_to(target)
    return link


def _world_writable(tmp: Path) -> Path:
    path = tmp / "shared"
    path.mkdir(exist_ok=True)
    path.chmod(0o1777)
    return path


def _foreign(tmp: Path) -> Path:
    if os.getuid() != 0:
        return Path("/usr")  # owned by root, and we are not root
    path = tmp / "foreign"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, 65534, 65534)
    return path


@dataclass(frozen=True)
class Bad:
    id: str
    setup: Setup
    # The line must start with the variable and contain these (value, accepted form).
    variable: str
    says: tuple[str, ...]
    hidden: str | None = None  # a secret that must not appear
    # "settings": refused by the pure parse (even `import brs_autopatch` without botocore);
    # "launcher": refused by brs-run; "program": only the program's plan can tell.
    stage: str = "launcher"
    extra: dict[str, str] = field(default_factory=dict)


BAD: list[Bad] = [
    # BRS_ASSUME_ROLE_KWARGS against botocore's STS model
    Bad("arkw-unknown-key", _kwargs(Bogus=1), "BRS_ASSUME_ROLE_KWARGS", ("'Bogus'", "expected one of")),
    Bad("arkw-type", _kwargs(Tags="x"), "BRS_ASSUME_ROLE_KWARGS", ("Tags='x'", "expected a list")),
    Bad(
        "arkw-nested-type",
        _kwargs(Tags=[{"Key": 1, "Value": "v"}]),
        "BRS_ASSUME_ROLE_KWARGS",
        ("Tags[0].Key=1", "expected a string"),
    ),
    Bad(
        "arkw-secret-type",
        _kwargs(Policy=987654321),
        "BRS_ASSUME_ROLE_KWARGS",
        ("Policy", "expected a string"),
        hidden="987654321",
    ),
    Bad(
        "arkw-too-short",
        _kwargs(SourceIdentity="x"),
        "BRS_ASSUME_ROLE_KWARGS",
        ("SourceIdentity", "at least 2"),
    ),
    # BRS_STS_CLIENT_KWARGS: keywords, botocore Config values, endpoint_url
    Bad("client-unknown-key", _client(bogus=1), "BRS_STS_CLIENT_KWARGS", ("'bogus'", "expected one of")),
    Bad("client-region-type", _client(region_name=5), "BRS_STS_CLIENT_KWARGS", ("region_name", "a string")),
    Bad(
        "client-secret-type",
        _client(aws_secret_access_key=24681357),
        "BRS_STS_CLIENT_KWARGS",
        ("aws_secret_access_key", "a string"),
        hidden="24681357",
    ),
    Bad("config-type", _client(config="fast"), "BRS_STS_CLIENT_KWARGS", ("'config'", "an object")),
    Bad("config-unknown", _config(bogus_option=1), "BRS_STS_CLIENT_KWARGS", ("'bogus_option'", "one of")),
    Bad(
        "connect-timeout",
        _config(connect_timeout="abc"),
        "BRS_STS_CLIENT_KWARGS",
        ("'connect_timeout'='abc'", "a number of seconds"),
    ),
    Bad(
        "read-timeout-negative",
        _config(read_timeout=-1),
        "BRS_STS_CLIENT_KWARGS",
        ("read_timeout", "greater than 0"),
    ),
    Bad(
        "retries-string",
        _config(retries="x"),
        "BRS_STS_CLIENT_KWARGS",
        ("'retries'='x'", "an object such as"),
    ),
    Bad(
        "retries-mode",
        _config(retries={"mode": "turbo"}),
        "BRS_STS_CLIENT_KWARGS",
        ("retries", "legacy, standard, adaptive"),
    ),
    Bad(
        "retries-attempts",
        _config(retries={"max_attempts": "3"}),
        "BRS_STS_CLIENT_KWARGS",
        ("max_attempts", "an integer"),
    ),
    Bad(
        "retries-key",
        _config(retries={"tries": 3}),
        "BRS_STS_CLIENT_KWARGS",
        ("retries", "total_max_attempts"),
    ),
    Bad("proxies-string", _config(proxies="x"), "BRS_STS_CLIENT_KWARGS", ("proxies", "proxy URL")),
    Bad(
        "proxies-secret",
        _config(proxies={"https": "ftp://user:s3cr3tpw@proxy:3128"}),
        "BRS_STS_CLIENT_KWARGS",
        ("proxies", "proxy URL"),
        hidden="s3cr3tpw",
    ),
    Bad(
        "pool-zero",
        _config(max_pool_connections=0),
        "BRS_STS_CLIENT_KWARGS",
        ("max_pool_connections", "at least 1"),
    ),
    Bad(
        "keepalive", _config(tcp_keepalive="yes"), "BRS_STS_CLIENT_KWARGS", ("tcp_keepalive", "true or false")
    ),
    Bad(
        "checksum",
        _config(request_checksum_calculation="always"),
        "BRS_STS_CLIENT_KWARGS",
        ("request_checksum_calculation", "when_supported"),
    ),
    Bad(
        "s3-style",
        _config(s3={"addressing_style": "sideways"}),
        "BRS_STS_CLIENT_KWARGS",
        ("addressing_style", "auto, virtual, path"),
    ),
    Bad(
        "client-ftp",
        _client(endpoint_url="ftp://127.0.0.1/"),
        "BRS_STS_CLIENT_KWARGS",
        ("endpoint_url", "scheme is 'ftp'", "http:// or https://"),
    ),
    Bad(
        "client-port",
        _client(endpoint_url="http://127.0.0.1:99999"),
        "BRS_STS_CLIENT_KWARGS",
        ("endpoint_url", "port", "1-65535"),
    ),
    Bad(
        "env-url-ftp",
        _env(BRS_STS_ENDPOINT_URL="ftp://127.0.0.1/"),
        "BRS_STS_ENDPOINT_URL",
        ("'ftp://127.0.0.1/'", "http:// or https://"),
        stage="settings",
    ),
    Bad(
        "env-url-port",
        _env(BRS_STS_ENDPOINT_URL="http://127.0.0.1:99999"),
        "BRS_STS_ENDPOINT_URL",
        ("99999", "port 1-65535"),
        stage="settings",
    ),
    # JSON that is not a sane object
    Bad(
        "bomb-list",
        _env(BRS_ASSUME_ROLE_KWARGS="[" * 100000),
        "BRS_ASSUME_ROLE_KWARGS",
        ("characters",),
        stage="settings",
    ),
    Bad(
        "bomb-list-deep",
        _env(BRS_ASSUME_ROLE_KWARGS="[" * 60000),
        "BRS_ASSUME_ROLE_KWARGS",
        ("nested at most",),
        stage="settings",
    ),
    Bad(
        "bomb-deep",
        _env(BRS_STS_CLIENT_KWARGS='{"a":' * 5000 + "1" + "}" * 5000),
        "BRS_STS_CLIENT_KWARGS",
        ("nested at most",),
        stage="settings",
    ),
    Bad(
        "bomb-depth-40",
        _env(BRS_STS_CLIENT_KWARGS='{"a":' * 40 + "1" + "}" * 40),
        "BRS_STS_CLIENT_KWARGS",
        ("nested at most 32",),
        stage="settings",
    ),
    # methods
    Bad(
        "method-unknown",
        _env(BRS_METHOD="no-such-plugin"),
        "BRS_METHOD",
        ("'no-such-plugin'", "expected one of"),
    ),
    Bad(
        "custom-missing",
        _env(BRS_METHOD="custom", BRS_CUSTOM_METHOD="no_such_module_brs:get"),
        "BRS_CUSTOM_METHOD",
        ("'no_such_module_brs:get'", "no_such_module_brs'", "odule"),
    ),
    Bad(
        "custom-exits",
        _module("brs_exiting", "import sys\nsys.exit(3)\n"),
        "BRS_CUSTOM_METHOD",
        ("'brs_exiting:get'", "sys.exit(3)"),
        stage="program",
    ),
    Bad(
        "custom-raises",
        _module("brs_raising", "raise RuntimeError('boom at import')\n"),
        "BRS_CUSTOM_METHOD",
        ("'brs_raising:get'", "RuntimeError: boom at import"),
        stage="program",
    ),
    Bad(
        "custom-no-attr",
        _module("brs_no_attr", "x = 1\n"),
        "BRS_CUSTOM_METHOD",
        ("'brs_no_attr:get'", "AttributeError"),
        stage="program",
    ),
    Bad(
        "custom-not-callable",
        _module("brs_not_callable", "get = 1\n"),
        "BRS_CUSTOM_METHOD",
        ("'brs_not_callable:get'", "expected a callable"),
        stage="program",
    ),
    Bad(
        "plugin-exits",
        _plugin("import sys\nsys.exit(4)\n"),
        "BRS_METHOD",
        ("'brs-broken'", "sys.exit(4)"),
        stage="program",
    ),
    Bad(
        "plugin-raises",
        _plugin("import no_such_dependency_brs\n"),
        "BRS_METHOD",
        ("'brs-broken'", "ModuleNotFoundError"),
        stage="program",
    ),
    # the cache directory
    Bad(
        "cache-file",
        _cache(_regular_file),
        "BRS_CACHE_DIR",
        ("cache-file", "not a directory", "owned by you"),
    ),
    Bad("cache-symlink", _cache(_symlink), "BRS_CACHE_DIR", ("cache-link", "symlink")),
    Bad("cache-shared", _cache(_world_writable), "BRS_CACHE_DIR", ("shared", "group- or world-writable")),
    Bad("cache-foreign", _cache(_foreign), "BRS_CACHE_DIR", ("owned by uid",)),
    Bad("cache-no-parent", _cache(_under_a_file), "BRS_CACHE_DIR", ("not a directory",)),
]
IDS = [case.id for case in BAD]


def _env_for(case: Bad, tmp_path: Path) -> dict[str, str]:
    return {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": SESSION, **case.setup(tmp_path)}


def _assert_message(line: str, case: Bad) -> None:
    assert line.startswith(case.variable), line
    for fragment in case.says:
        assert fragment in line, (fragment, line)
    assert "expected" in line, line
    assert "<class" not in line and "Traceback" not in line
    if case.hidden is not None:
        assert case.hidden not in line


def _config_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("brs_autopatch.errors.ConfigError: ")]
    assert len(lines) == 1, stderr
    return lines[0].removeprefix("brs_autopatch.errors.ConfigError: ")


def _no_frame_inside_botocore(stderr: str) -> None:
    frames = [line for line in stderr.splitlines() if line.strip().startswith("File ")]
    assert not [f for f in frames if f"{os.sep}botocore{os.sep}" in f], stderr


@pytest.mark.parametrize("case", BAD, ids=IDS)
def test_brs_run_refuses_before_the_program_starts(launch: Launch, tmp_path: Path, case: Bad) -> None:
    marker = tmp_path / "started"
    program = f"import boto3\nopen({str(marker)!r}, 'w').close()"
    result = launch([*MODULE, "python", "-c", program], env=_env_for(case, tmp_path))
    if case.stage != "program":
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("brs-run: ")
        _assert_message(result.stderr.strip().removeprefix("brs-run: "), case)
    else:
        # Located, not run, by the launcher; the program's plan refuses it at `import boto3`.
        assert result.returncode == 1, result.stderr
        _assert_message(_config_error_line(result.stderr), case)
        _no_frame_inside_botocore(result.stderr)
    assert not marker.exists()


@pytest.mark.parametrize("case", BAD, ids=IDS)
def test_import_after_botocore_raises(run_python: RunPython, tmp_path: Path, case: Bad) -> None:
    result = run_python(
        "import botocore\nimport brs_autopatch\nprint('went on')", env=_env_for(case, tmp_path)
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    _assert_message(_config_error_line(result.stderr), case)
    _no_frame_inside_botocore(result.stderr)


IMPORT_THEN_BOTO3 = """
import brs_autopatch
print("imported")
for attempt in range(2):
    try:
        import boto3
    except brs_autopatch.ConfigError as error:
        print("ConfigError", str(error).count("\\n"), type(error).__module__)
    else:
        print("imported boto3")
"""


@pytest.mark.parametrize("case", BAD, ids=IDS)
def test_import_then_boto3_raises_at_the_boto3_import(
    run_python: RunPython, tmp_path: Path, case: Bad
) -> None:
    env = _env_for(case, tmp_path)
    result = run_python(IMPORT_THEN_BOTO3, env=env)
    if case.stage == "settings":  # the pure parse refuses it earlier still: at the import
        assert result.returncode == 1 and result.stdout == "", result.stderr
        _assert_message(_config_error_line(result.stderr), case)
        return
    assert result.returncode == 0, result.stderr
    # A second import raises again: the hook stays armed, boto3 never comes up unpatched.
    assert result.stdout.splitlines() == ["imported", *["ConfigError 0 brs_autopatch.errors"] * 2], (
        result.stderr
    )


WARN_PROGRAM = """
import brs_autopatch, boto3
from brs_autopatch.patch import install as patch
print(patch.current(), type(boto3.Session().get_credentials()).__name__)
"""


@pytest.mark.parametrize("case", BAD, ids=IDS)
def test_on_error_warn_one_warning_and_unpatched(run_python: RunPython, tmp_path: Path, case: Bad) -> None:
    env = {**_env_for(case, tmp_path), "BRS_ON_ERROR": "warn"}
    result = run_python(WARN_PROGRAM, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "Credentials"]  # botocore's own: the source keys
    warnings = [line for line in result.stderr.splitlines() if "not patching" in line]
    assert len(warnings) == 1, result.stderr
    assert "BRS_ON_ERROR=warn" in warnings[0]
    _assert_message(warnings[0].split("BRS_ON_ERROR=warn): ", 1)[1], case)
    assert "Traceback" not in result.stderr


def test_brs_run_with_on_error_warn_runs_the_program_unpatched(launch: Launch, tmp_path: Path) -> None:
    result = launch(
        [*MODULE, "python", "-c", "import os; print(os.environ.get('BRS_BOOTSTRAP'))"],
        env={"BRS_ON_ERROR": "warn", **_config(retries="x")(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "None\n"
    assert result.stderr.startswith(
        "brs-run: warning: not patching (BRS_ON_ERROR=warn): BRS_STS_CLIENT_KWARGS"
    )


@pytest.mark.parametrize(
    "case",
    [c for c in BAD if c.id in ("connect-timeout", "custom-exits")],
    ids=["connect-timeout", "custom-exits"],
)
def test_check_reports_the_same_error_and_calls_no_sts(
    launch: Launch, sts: StsServer, tmp_path: Path, case: Bad
) -> None:
    result = launch([*MODULE, "--check"], env=_env_for(case, tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = result.stderr.strip().splitlines()
    assert len(failed) == 1 and failed[0].startswith("brs-run --check: FAILED: "), result.stderr
    _assert_message(failed[0].removeprefix("brs-run --check: FAILED: "), case)
    assert sts.count("sts:AssumeRole") == 0


BROKEN_CHECK = """
import brs_autopatch, brs_autopatch.plan
def broken(*args, **kwargs):
    raise RuntimeError("a check\\nthat broke")
brs_autopatch.plan.make = broken
try:
    import boto3
except brs_autopatch.ConfigError as error:
    print("ConfigError:", error)
else:
    from brs_autopatch.patch import install as patch
    print("imported, patched:", patch.current() is not None)
"""


@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_a_check_that_breaks_is_a_config_error_in_the_hook(run_python: RunPython, on_error: str) -> None:
    result = run_python(BROKEN_CHECK, env={"BRS_ROLE_ARN": ROLE, "BRS_ON_ERROR": on_error})
    assert result.returncode == 0, result.stderr
    expected = "the settings could not be checked: RuntimeError: a check that broke"
    if on_error == "raise":
        assert result.stdout == f"ConfigError: {expected}\n"
    else:
        assert result.stdout == "imported, patched: False\n"
        assert result.stderr.count(expected) == 1


# -- good values pass, everywhere -----------------------------------------------------------

GOOD_CLIENT = {
    "config": {
        "retries": {"mode": "adaptive", "max_attempts": 5},
        "connect_timeout": 3.5,
        "read_timeout": 20,
        "proxies": {"https": "http://127.0.0.1:3128", "http://example.com": "proxy.example.com:8080"},
        "proxies_config": {"proxy_use_forwarding_for_https": False},
        "max_pool_connections": 4,
        "tcp_keepalive": True,
        "user_agent_extra": "brs-test",
        "parameter_validation": True,
        "s3": {"addressing_style": "path"},
        "request_checksum_calculation": "when_required",
        "signature_version": "v4",
    },
    "verify": True,
}
GOOD_KWARGS = {"Tags": [{"Key": "team", "Value": "data"}], "SourceIdentity": "brs-test", "Policy": "{}"}


def test_good_values_pass_the_launcher_and_the_program_assumes_the_role(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = {
        "BRS_STS_CLIENT_KWARGS": json.dumps(GOOD_CLIENT),
        "BRS_ASSUME_ROLE_KWARGS": json.dumps(GOOD_KWARGS),
        "BRS_CACHE_DIR": str(cache),
        "BRS_STS_ENDPOINT_URL": sts.url,
    }
    program = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
    result = launch([*MODULE, "python", "-c", program], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1


def test_good_custom_method_module_is_imported_once_by_the_program(
    run_python: RunPython, tmp_path: Path
) -> None:
    env = {
        "BRS_ROLE_ARN": ROLE,
        **_module(
            "brs_counting",
            """
        import os
        with open(os.environ["IMPORTS"], "a") as log:
            log.write("imported\\n")
        def get():
            return {"access_key": "AKIAEXAMPLE", "secret_key": "s", "token": "t",
                    "expiry_time": "2999-01-01T00:00:00Z"}
    """,
        )(tmp_path),
        "IMPORTS": str(tmp_path / "imports"),
    }
    result = run_python(
        "import brs_autopatch, boto3\nimport sys\nprint('brs_counting' in sys.modules)", env=env
    )
    assert result.returncode == 0, result.stderr
    # Imported by the plan as botocore arrived, before any session: refused early, run once.
    assert result.stdout.strip() == "True"
    assert (tmp_path / "imports").read_text() == "imported\n"


def test_brs_run_finds_a_custom_method_module_beside_the_script(launch: Launch, tmp_path: Path) -> None:
    # docs/configuration.md: a BRS_CUSTOM_METHOD module must be found "on PYTHONPATH, the current
    # directory, the script's directory or site-packages". Here only the script's directory.
    app = tmp_path / "app"
    app.mkdir()
    (app / "brs_beside.py").write_text(
        "def get():\n"
        "    return {'access_key': 'AKIAEXAMPLEBESIDE000', 'secret_key': 'beside-secret',\n"
        "            'token': 'beside-token', 'expiry_time': '2999-01-01T00:00:00Z'}\n"
    )
    (app / "main.py").write_text(
        "import boto3\nprint(boto3.Session().get_credentials().get_frozen_credentials().access_key)\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"BRS_ROLE_ARN": None, "BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_beside:get"}
    found = launch([*MODULE, "python", str(app / "main.py")], env=env, cwd=elsewhere)
    assert (found.returncode, found.stdout.strip()) == (0, "AKIAEXAMPLEBESIDE000"), found.stderr
    # Python options before the script, one taking an argument; a #! script on PATH.
    with_options = ["python", "-W", "ignore", "-X", "dev", str(app / "main.py")]
    found = launch([*MODULE, *with_options], env=env, cwd=elsewhere)
    assert (found.returncode, found.stdout.strip()) == (0, "AKIAEXAMPLEBESIDE000"), found.stderr
    tool = app / "tool"
    tool.write_text("#!/usr/bin/env python\n" + (app / "main.py").read_text())
    tool.chmod(0o755)
    path = f"{app}{os.pathsep}{os.environ['PATH']}"
    found = launch([*MODULE, "tool"], env={**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{path}"},
                   cwd=elsewhere)
    assert (found.returncode, found.stdout.strip()) == (0, "AKIAEXAMPLEBESIDE000"), found.stderr
    # The control: a program whose path does not hold the module is refused up front.
    refused = launch([*MODULE, "python", "-c", "pass"], env=env, cwd=elsewhere)
    assert refused.returncode == 2
    assert "no module 'brs_beside' on the program's import path" in refused.stderr


def test_custom_module_importing_from_boto3_works_when_boto3_brings_botocore(
    run_python: RunPython, sts: StsServer, tmp_path: Path
) -> None:
    # The plan runs in botocore's import hook, inside `import boto3`: this module sees
    # boto3 half made. Not a bad setting: it is imported when credentials are built.
    env = {
        "BRS_ROLE_ARN": ROLE,
        "BRS_ROLE_SESSION_NAME": SESSION,
        **_module(
            "brs_from_boto3",
            """
        from boto3.session import Session
        def get():
            assert Session is not None
            return {"access_key": "AKIAEXAMPLE", "secret_key": "s", "token": "t",
                    "expiry_time": "2999-01-01T00:00:00Z"}
    """,
        )(tmp_path),
    }
    program = "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])"
    result = run_python(program, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED


# -- start-up stays lean --------------------------------------------------------------------


def _imported(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }


def test_children_import_nothing_new_at_start_up(launch: Launch) -> None:
    result = launch([*MODULE, sys.executable, "-X", "importtime", "-c", "pass"])
    assert result.returncode == 0, result.stderr
    ours = {name for name in _imported(result.stderr) if name.startswith("brs_autopatch")}
    assert ours == set()  # the bootstrap loads brs_autopatch when botocore is imported


def test_the_hook_loads_no_sts_model_for_plain_settings(launch: Launch) -> None:
    # Outside brs-run the plan runs as botocore arrives; with nothing botocore must judge,
    # it loads neither the STS model nor the Config checks (import boto3 stays as cheap).
    program = "import sys, boto3; print(sorted(m for m in sys.modules if m.startswith('brs_autopatch.')))"
    result = launch(["python", "-c", f"import brs_autopatch; {program}"])
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert "brs_autopatch.plan" in loaded and "brs_autopatch.patch.install" in loaded
    assert not loaded & {
        "brs_autopatch.config.botocore_checks",
        "brs_autopatch.config.client_config",
        "brs_autopatch.build",
    }
    # Under brs-run, which checked these settings already, everything waits for a session
    # (brs_autopatch.patch.deferred).
    result = launch([*MODULE, "python", "-c", program])
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert "brs_autopatch.patch.deferred" in loaded
    assert not loaded & {"brs_autopatch.plan", "brs_autopatch.methods", "brs_autopatch.build"}


def test_the_launcher_loads_botocore_only_for_values_that_need_it(launch: Launch, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    plain = launch(
        [sys.executable, "-X", "importtime", *MODULE[1:], "true"], env={"BRS_CACHE_DIR": str(cache)}
    )
    assert plain.returncode == 0, plain.stderr
    assert not {m for m in _imported(plain.stderr) if m.split(".")[0] in ("boto3", "botocore")}
    needs = launch(
        [sys.executable, "-X", "importtime", *MODULE[1:], "true"],
        env={"BRS_STS_CLIENT_KWARGS": '{"config": {"connect_timeout": 2}}'},
    )
    assert needs.returncode == 0, needs.stderr
    assert "botocore.config" in _imported(needs.stderr)


# -- the plan itself, in process --------------------------------------------------------------


def test_plan_holds_what_the_build_needs(aws_env: dict[str, str]) -> None:
    settings = from_env(
        {
            "BRS_ROLE_ARN": f"{ROLE},{ROLE}2",
            "BRS_ROLE_SESSION_NAME": SESSION,
            "BRS_STS_CLIENT_KWARGS": json.dumps(GOOD_CLIENT),
            "BRS_ASSUME_ROLE_KWARGS": json.dumps(GOOD_KWARGS),
        }
    )
    made = plan.make(settings)
    config = made.sts_client_kwargs["config"]
    assert type(config).__name__ == "Config"
    assert config.retries == {"mode": "adaptive", "max_attempts": 5}
    assert config.connect_timeout == 3.5 and config.read_timeout == 20  # the user's win over ours
    assert [hop.role_arn for hop in made.hops] == [ROLE, f"{ROLE}2"]
    assert made.hops[0].params["Tags"] == GOOD_KWARGS["Tags"]  # the caller's conditions: first role
    assert "Tags" not in made.hops[1].params
    with pytest.raises(TypeError):
        made.hops[0].params["RoleArn"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "arn, configured, region",
    [
        ("arn:aws-cn:iam::123456789012:role/app", None, "cn-north-1"),
        ("arn:aws-us-gov:iam::123456789012:role/app", None, "us-gov-west-1"),
        ("arn:aws-iso-b:iam::123456789012:role/app", None, "us-isob-east-1"),  # botocore's data
        ("arn:aws-cn:iam::123456789012:role/app", "cn-northwest-1", "cn-northwest-1"),
    ],
)
def test_the_sts_region_defaults_to_the_configured_one_else_the_partitions(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, arn: str, configured: str | None, region: str
) -> None:
    # docs/configuration.md, BRS_STS_REGION default: "configured region, else the partition's (us-east-1,
    # cn-north-1, ...)". The real source session looks the region up (environment here).
    from brs_autopatch import build as factory
    from brs_autopatch.credentials import sources

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    if configured is not None:
        monkeypatch.setenv("AWS_DEFAULT_REGION", configured)
    made = plan.make(Settings(role_arns=(arn,)))
    assert factory.client_kwargs(made, sources.plain_session)["region_name"] == region
    explicit = plan.make(Settings(role_arns=(arn,), sts_region="eu-west-3"))
    assert factory.client_kwargs(explicit, sources.plain_session)["region_name"] == "eu-west-3"


def test_arguments_name_the_python_arguments(aws_env: dict[str, str]) -> None:
    settings = Settings(role_arns=(ROLE,), sts_client_kwargs={"config": {"connect_timeout": "soon"}})
    with pytest.raises(ConfigError, match=r"^sts_client_kwargs key 'config' option 'connect_timeout'"):
        plan.make(settings, origin=plan.ARGUMENTS)
    with pytest.raises(ConfigError, match=r"^assume_role_kwargs key RoleSessionName is too small"):
        plan.make(Settings(role_arns=(ROLE,), role_session_name="x"), origin=plan.ARGUMENTS)


def test_a_python_config_object_is_checked_too(aws_env: dict[str, str]) -> None:
    from botocore.config import Config

    settings = Settings(role_arns=(ROLE,), sts_client_kwargs={"config": Config(connect_timeout="abc")})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="connect_timeout"):
        plan.make(settings, origin=plan.ARGUMENTS)


def test_custom_module_calling_sys_exit_is_an_error_not_an_exit(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "brs_exit_inproc.py").write_text("import sys\nsys.exit('bye')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = from_env(
        {"BRS_ROLE_ARN": ROLE, "BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_exit_inproc:get"}
    )
    with pytest.raises(ConfigError, match=r"called sys.exit\('bye'\)"):
        plan.make(settings)
    assert importer.locate("brs_exit_inproc", ()) and not importer.locate("brs_exit_inproc.sub", ())


def test_custom_module_keyboard_interrupt_propagates(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "brs_interrupt_inproc.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = from_env(
        {"BRS_ROLE_ARN": ROLE, "BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_interrupt_inproc:get"}
    )
    with pytest.raises(KeyboardInterrupt):
        plan.make(settings)


def test_locate_runs_no_package_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "brs_loud_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('ran the package')\n")
    (package / "creds.py").write_text("def get(): pass\n")
    assert importer.locate("brs_loud_pkg.creds", [str(tmp_path)])
    assert not importer.locate("brs_loud_pkg.missing", [str(tmp_path)])
    assert not importer.locate("brs_loud_pkg", [])  # not on sys.path, nor on the given path
    assert "brs_loud_pkg" not in sys.modules


@pytest.mark.parametrize(
    "raw", ["[" * 100000, '{"a":' * 3000 + "1" + "}" * 3000, "{" + '"a":1,' * 20000 + '"b":2}']
)
def test_json_bombs_are_config_errors(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^BRS_STS_CLIENT_KWARGS=\(value hidden\) is not valid"):
        environment.parse_json_object("BRS_STS_CLIENT_KWARGS", raw)


@pytest.mark.parametrize(
    "raw", ["[" * 60000, '{"a":' * 5000 + "1" + "}" * 5000, '{"a":' * 33 + "{}" + "}" * 33]
)
def test_json_nesting_is_refused_before_the_json_module_sees_it(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    # How deep the json module goes and how it gives up is the interpreter's: CPython 3.14
    # parses 5000 levels where 3.11 raises RecursionError, and checks the C stack, not the
    # recursion limit. A parser that reports deep nesting as a plain ValueError stands in
    # for them all: the message must still be ours.
    def parser(text: str) -> object:
        raise ValueError("some interpreter's own way of giving up")

    monkeypatch.setattr("brs_autopatch.config.variables.json.loads", parser)
    with pytest.raises(ConfigError, match=r"expected a JSON object nested at most 32 levels deep$"):
        environment.parse_json_object("BRS_ASSUME_ROLE_KWARGS", raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": "' + "[" * 100 + '"}',  # brackets inside a string are not nesting
        '{"a": "\\"", "b": [[1]]}',  # an escaped quote does not end the string
        '{"a": 1}' + "]" * 5 + "[" * 100,  # json.loads stops at the end of the first value
        '{"a": ' * 31 + "1" + "}" * 31,  # 31 objects and the number: 32 levels
    ],
)
def test_json_nesting_counts_only_what_the_parser_reads(raw: str) -> None:
    try:
        environment.parse_json_object("BRS_ASSUME_ROLE_KWARGS", raw)
    except ConfigError as error:
        assert "nested at most" not in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000",
        "https://sts.us-east-1.amazonaws.com",
        "https://sts.amazonaws.com/",
        "http://[::1]:8080/path",
        "http://localhost",
    ],
)
def test_good_endpoint_urls(url: str) -> None:
    assert environment.endpoint_url_problem(url) is None
    assert from_env({"BRS_STS_ENDPOINT_URL": url}).sts_endpoint_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host",
        "http://host:99999",
        "http://host:0",
        "http://:80",
        "host:443",
        "http://host:",
        "http://ho st",
        "http://-x-.com",
        "file:///etc/passwd",
    ],
)
def test_bad_endpoint_urls(url: str) -> None:
    assert environment.endpoint_url_problem(url) is not None
    with pytest.raises(ConfigError, match=r"^BRS_STS_ENDPOINT_URL="):
        from_env({"BRS_STS_ENDPOINT_URL": url})


# Every botocore Config option with values of every JSON type: whatever the plan accepts,
# botocore's client creation accepts too (no error left for the first refresh).
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**7)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        [
            "",
            "x",
            "standard",
            "adaptive",
            "when_required",
            "auto",
            "path",
            "v4",
            "http://127.0.0.1:3128",
            "us-east-1",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "mode",
                    "max_attempts",
                    "total_max_attempts",
                    "https",
                    "http",
                    "addressing_style",
                    "proxy_ca_bundle",
                    "x",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)


def test_config_table_names_only_real_options() -> None:
    import botocore
    from botocore.config import Config

    # A misspelt option would never be checked. Older botocores lack the newest options
    # (their checks then go unused); options a newer one adds are left to botocore.
    newer = {
        "request_checksum_calculation",
        "response_checksum_validation",
        "account_id_endpoint_mode",
        "auth_scheme_preference",
        "sigv4a_signing_region_set",
        "s3_disable_express_session_auth",
    }
    unknown = set(config_values.CONFIG_CHECKS) - set(Config.OPTION_DEFAULTS)
    recent = tuple(map(int, botocore.__version__.split(".")[:2])) >= (1, 40)
    assert unknown == set() if recent else unknown <= newer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    options=st.dictionaries(
        st.sampled_from(sorted(config_values.CONFIG_CHECKS)), JSON, min_size=1, max_size=3
    )
)
def test_what_the_plan_accepts_botocore_accepts(aws_env: dict[str, str], options: dict[str, Any]) -> None:
    import botocore.session

    settings = Settings(role_arns=(ROLE,), sts_client_kwargs={"config": options, "region_name": "us-east-1"})
    try:
        made = plan.make(settings)
    except ConfigError as error:
        assert "\n" not in str(error) and "<class" not in str(error)
        return
    botocore.session.Session().create_client("sts", **made.sts_client_kwargs)


def test_build_uses_the_plan_and_checks_nothing_again(aws_env: dict[str, str]) -> None:
    from brs_autopatch import build as factory

    made = plan.make(from_env({"BRS_ROLE_ARN": ROLE}))
    broken = made._replace(settings=made.settings.replace(sts_client_kwargs={"bogus": 1}))
    credentials = factory.build_from_plan(broken)  # the plan is the truth; settings are not re-read
    assert credentials.label == ROLE


@pytest.mark.parametrize(
    ("args", "script"),
    [
        (["app.py", "-c", "x"], "app.py"),
        (["-u", "-B", "app.py"], "app.py"),
        (["-W", "ignore", "app.py"], "app.py"),
        (["-Wignore", "-X", "dev", "-O", "app.py"], "app.py"),
        (["--check-hash-based-pycs", "always", "app.py"], "app.py"),
        (["-u", "--", "app.py"], "app.py"),
        (["-c", "print(1)", "app.py"], None),
        (["-uc", "print(1)"], None),
        (["-m", "pkg.app"], None),
        (["-"], None),
        ([], None),
    ],
)
def test_the_launcher_finds_the_script_python_will_run(args: list[str], script: str | None) -> None:
    from brs_autopatch.launch.program import script_of

    assert script_of(["python3.11", *args], None) == script
