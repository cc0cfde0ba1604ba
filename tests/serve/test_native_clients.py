"""``BRS_SERVE=true`` with ``import brs_autopatch``: native clients sign as the role.

Real pyarrow (the AWS C++ SDK), pandas (through pyarrow) and polars (its boto3 provider,
and its Rust ``object_store`` chain) read a Parquet file from the local moto S3 in a
fresh interpreter that only imported the package. The server records which key signed
each request: the source key may sign AssumeRole and nothing else. Also here: the
environment the process and its subprocesses see, fork, exit, and nothing at all when
BRS_SERVE is off.
"""

from __future__ import annotations

import importlib.util
import io
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from stsclient import (
    FAKE_SOURCE_ACCESS_KEY_ID,
    FAKE_SOURCE_SECRET_ACCESS_KEY,
    RunPython,
    StsServer,
    make_role_arn,
)

ROLE = make_role_arn("native-role")
SESSION = "native"
ASSUMED = f"arn:aws:sts::123456789012:assumed-role/native-role/{SESSION}"
BUCKET = "native-bucket"
KEY = "data.parquet"
ENV = {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": SESSION, "BRS_SERVE": "true"}


@pytest.fixture
def parquet(sts: StsServer, aws_env: dict[str, str]) -> str:
    """A Parquet file in moto's S3, written with the source credentials; then counts cleared."""
    import boto3
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    buffer = io.BytesIO()
    pq.write_table(pa.table({"n": [1, 2, 3]}), buffer)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=buffer.getvalue())
    sts.reset()
    return f"s3://{BUCKET}/{KEY}"


def run_json(run_python: RunPython, code: str, env: dict[str, str | None] | None = None) -> Any:
    result = run_python(textwrap.dedent(code), env={**ENV, **(env or {})}, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON on stdout:\n{result.stdout}\n{result.stderr}"
    return json.loads(lines[-1])


def assert_no_source_signed(sts: StsServer) -> set[str]:
    """Every request but AssumeRole signed with a role key; returns the role keys seen."""
    calls = sts.calls()
    by_source = [c["action"] for c in calls if c["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID]
    assert set(by_source) <= {"AssumeRole"}, by_source
    s3 = {c["access_key_id"] for c in calls if c["service"] == "s3"}
    assert s3 and None not in s3, calls
    return s3


READERS = """
import json, os, sys
import brs_autopatch
out = {}
if "pyarrow" in sys.argv:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
    from pyarrow import fs
    s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http")
    out["pyarrow"] = pq.read_table("BUCKET/KEY", filesystem=s3).column("n").to_pylist()
if "pandas" in sys.argv:
    import pandas
    out["pandas"] = pandas.read_parquet("s3://BUCKET/KEY")["n"].tolist()
if "polars" in sys.argv:
    import polars
    out["polars"] = polars.read_parquet("s3://BUCKET/KEY")["n"].to_list()
if "polars-rust" in sys.argv:  # polars' own Rust chain (object_store), no boto3 provider
    import polars
    out["polars-rust"] = polars.read_parquet(
        "s3://BUCKET/KEY", credential_provider=None,
        storage_options={"aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"], "aws_allow_http": "true"},
    )["n"].to_list()
print(json.dumps(out))
""".replace("BUCKET", BUCKET).replace("KEY", KEY)


@pytest.mark.parametrize(
    "client, modules",
    [
        ("pyarrow", ("pyarrow",)),
        ("pandas", ("pandas", "pyarrow")),
        ("polars", ("polars",)),
        ("polars-rust", ("polars",)),
    ],
)
def test_native_clients_sign_as_the_role(
    sts: StsServer, run_python: RunPython, parquet: str, client: str, modules: tuple[str, ...]
) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"not installed: {missing} (they are in the test extra)")
    found = run_json(run_python, f"import sys; sys.argv += [{client!r}]\n" + READERS)
    assert found == {client: [1, 2, 3]}
    assert_no_source_signed(sts)
    assert sts.count("sts:AssumeRole") == 1


@pytest.mark.parametrize(
    "client, signer",
    [("pyarrow", "source"), ("pandas", "source"), ("polars-rust", "source"), ("polars", "role")],
)
def test_without_brs_serve(
    sts: StsServer, run_python: RunPython, parquet: str, client: str, signer: str
) -> None:
    # The control: the same reads with BRS_SERVE off. The native chains find the source
    # keys (so the test above proves the endpoint works), while polars' default provider
    # asks boto3, which the patch alone covers.
    found = run_json(run_python, f"import sys; sys.argv += [{client!r}]\n" + READERS, env={"BRS_SERVE": None})
    assert found == {client: [1, 2, 3]}
    keys = {c["access_key_id"] for c in sts.calls() if c["service"] == "s3"}
    if signer == "source":
        assert keys == {FAKE_SOURCE_ACCESS_KEY_ID}
    else:
        assert FAKE_SOURCE_ACCESS_KEY_ID not in keys and keys


def test_one_assume_role_for_boto3_native_clients_and_subprocesses(
    sts: StsServer, run_python: RunPython, parquet: str
) -> None:
    code = """
        import json, os, subprocess, sys
        import brs_autopatch, boto3
        import pyarrow.parquet as pq
        from pyarrow import fs
        arn = boto3.client("sts").get_caller_identity()["Arn"]
        s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http")
        rows = pq.read_table("BUCKET/KEY", filesystem=s3).num_rows
        # A subprocess that never imports brs_autopatch: botocore's container provider.
        child = subprocess.run(
            [sys.executable, "-c", "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"],
            capture_output=True, text=True, timeout=60,
        )
        # A patched Python subprocess: BRS_METHOD=served, it asks this process's endpoint.
        served = subprocess.run(
            [sys.executable, "-c", "import brs_autopatch, boto3, os; "
             "print(os.environ['BRS_METHOD'], boto3.client('sts').get_caller_identity()['Arn'])"],
            capture_output=True, text=True, timeout=60,
        )
        print(json.dumps({"arn": arn, "rows": rows, "child": child.stdout.strip(), "err": child.stderr,
                          "served": served.stdout.strip(), "served_err": served.stderr}))
    """.replace("BUCKET", BUCKET).replace("KEY", KEY)
    found = run_json(run_python, code, env={"PYTHONPATH": None})
    assert found["arn"] == ASSUMED
    assert found["child"] == ASSUMED, found["err"]
    assert found["served"] == f"served {ASSUMED}", found["served_err"]
    assert found["rows"] == 3
    assert_no_source_signed(sts)
    assert sts.count("sts:AssumeRole") == 1


def test_the_environment_holds_the_endpoint_and_no_source_identity(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    credentials = home / ".aws" / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDFILE000000000000\naws_secret_access_key = f\n")
    code = """
        import json, os, stat, urllib.request
        import brs_autopatch
        env = dict(os.environ)
        token_file = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
        workdir = os.path.dirname(token_file)
        with open(env["AWS_SHARED_CREDENTIALS_FILE"]) as f:
            files = f.read()
        request = urllib.request.Request(
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": open(token_file).read()}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        answer = json.load(opener.open(request, timeout=10))
        print(json.dumps({
            "names": sorted(env), "files": files, "dir_mode": stat.S_IMODE(os.stat(workdir).st_mode),
            "workdir": workdir, "url": env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            "key": answer["AccessKeyId"], "method": env.get("BRS_METHOD"),
        }))
    """
    found = run_json(run_python, code, env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "BRS_SERVE"):
        assert name not in found["names"]
    assert "AKIDFILE" not in found["files"]
    assert found["url"].startswith("http://127.0.0.1:")
    assert found["dir_mode"] == 0o700
    assert found["method"] == "served"  # Python children ask the endpoint
    assert found["key"] not in (FAKE_SOURCE_ACCESS_KEY_ID, "AKIDFILE000000000000")
    assert FAKE_SOURCE_SECRET_ACCESS_KEY not in json.dumps(found)
    assert not Path(found["workdir"]).exists(), "the token directory outlived the process"
    assert sts.count("sts:AssumeRole") == 1


def test_a_forked_child_keeps_working_and_exit_removes_the_directory(
    sts: StsServer, run_python: RunPython, parquet: str
) -> None:
    code = """
        import json, os, sys
        import brs_autopatch
        import pyarrow.parquet as pq
        from pyarrow import fs
        def read():
            s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http")
            return pq.read_table("BUCKET/KEY", filesystem=s3).num_rows
        before = read()
        workdir = os.path.dirname(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # The AWS C++ SDK under pyarrow is not fork-safe once used (its threads stay in
            # the parent; on CPython 3.14 a read in the child hung): the child's native
            # client is a fresh interpreter, which finds the endpoint in what it inherits.
            import subprocess
            import boto3
            reader = (
                "import os, pyarrow.parquet as pq; from pyarrow import fs; "
                "s3 = fs.S3FileSystem(endpoint_override=os.environ['AWS_ENDPOINT_URL'], scheme='http'); "
                "print(pq.read_table('BUCKET/KEY', filesystem=s3).num_rows)"
            )
            rows = int(subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True,
                                      check=True, timeout=60).stdout)
            arn = boto3.client("sts").get_caller_identity()["Arn"]
            os.write(w, json.dumps({"rows": rows, "arn": arn}).encode())
            # What atexit runs at the end of the child (pyarrow's own exit hooks are not
            # fork-safe, hence os._exit): it must not remove the parent's directory.
            brs_autopatch.serve.inprocess.current().close()
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        child = json.loads(os.read(r, 65536) or b"{}")
        print(json.dumps({
            "before": before, "child": child, "status": status, "dir_after_child": os.path.isdir(workdir),
            "after": read(), "workdir": workdir,
        }))
    """.replace("BUCKET", BUCKET).replace("KEY", KEY)
    found = run_json(run_python, code)
    assert found["status"] == 0
    assert found["child"] == {"rows": 3, "arn": ASSUMED}
    assert found["before"] == found["after"] == 3
    assert found["dir_after_child"] is True
    assert not Path(found["workdir"]).exists()
    assert_no_source_signed(sts)


def test_off_imports_no_server_code_and_changes_nothing(run_python: RunPython) -> None:
    code = """
        import json, os, sys
        before = dict(os.environ)
        import brs_autopatch
        prefixes = ("brs_autopatch.", "botocore", "socket", "http.server")
        loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
        print(json.dumps({"same": dict(os.environ) == before, "loaded": loaded}))
    """
    found = run_json(run_python, code, env={"BRS_SERVE": None})
    assert found["same"] is True
    for module in (
        "brs_autopatch.serve.inprocess",
        "brs_autopatch.serve.server",
        "brs_autopatch.serve.role",
        "brs_autopatch.serve.supervisor",
        "brs_autopatch.serve.start",
        "http.server",
    ):
        assert module not in found["loaded"]
    assert not any(name.startswith("botocore") for name in found["loaded"])
    found = run_json(run_python, code, env={"BRS_SERVE": "false"})
    assert found["same"] is True and "brs_autopatch.serve.inprocess" not in found["loaded"]


def test_a_bad_brs_serve_value_is_one_line_naming_it(run_python: RunPython) -> None:
    result = run_python("import brs_autopatch", env={**ENV, "BRS_SERVE": "sometimes"})
    assert result.returncode != 0
    assert "BRS_SERVE" in result.stderr and "sometimes" in result.stderr


def test_after_the_parent_ends_a_forked_childs_request_is_refused_at_once(
    run_python: RunPython, tmp_path: Path
) -> None:
    # The fault: the process that owns the endpoint is gone. Without closing its copy of
    # the listening socket the child's own connection would be queued by the kernel and
    # hang until the client's timeout.
    report = tmp_path / "child.json"
    code = """
        import json, os, sys, time, urllib.error, urllib.request
        import brs_autopatch
        url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        parent = os.getpid()
        if os.fork() == 0:
            deadline = time.monotonic() + 20
            while os.getppid() == parent and time.monotonic() < deadline:
                time.sleep(0.02)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            started = time.monotonic()
            try:
                opener.open(url, timeout=10)
                outcome = "answered"
            except urllib.error.URLError as error:
                outcome = type(error.reason).__name__
            except OSError as error:
                outcome = type(error).__name__
            token_file = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
            result = {"outcome": outcome, "seconds": time.monotonic() - started,
                      "orphaned": os.getppid() != parent, "dir": os.path.isdir(os.path.dirname(token_file))}
            with open(sys.argv[1] + ".tmp", "w") as f:
                json.dump(result, f)
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            os._exit(0)
        print("{}")
    """
    result = run_python(textwrap.dedent(code), args=[str(report)], env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = json.loads(report.read_text())
    assert found["orphaned"] is True
    assert found["outcome"] == "ConnectionRefusedError", found
    assert found["seconds"] < 2.0
    assert found["dir"] is False  # the parent removed it at exit


@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_a_source_that_cannot_be_resolved_is_one_line_and_leaves_the_environment(
    run_python: RunPython, tmp_path: Path, on_error: str
) -> None:
    # The fault: the source is a credential_process that fails. Serving would strip the
    # environment and then have nothing to assume the role with.
    config = tmp_path / "config"
    config.write_text("[default]\ncredential_process = sh -c 'echo broken >&2; exit 3'\n")
    code = """
        import json, os
        try:
            import brs_autopatch
            outcome = "imported"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        print(json.dumps({"outcome": outcome, "served": "AWS_CONTAINER_CREDENTIALS_FULL_URI" in os.environ,
                          "config": os.environ.get("AWS_CONFIG_FILE")}))
    """
    env: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_CONFIG_FILE": str(config),
        "BRS_ON_ERROR": on_error,
    }
    result = run_python(textwrap.dedent(code), env={**ENV, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["served"] is False and found["config"] == str(config)
    if on_error == "raise":
        expected = "ConfigError: BRS_SERVE=true: cannot resolve the source credentials"
        assert found["outcome"].startswith(expected)
        assert "\n" not in found["outcome"]
    else:
        assert found["outcome"] == "imported"
        lines = [line for line in result.stderr.splitlines() if "not serving" in line]
        assert len(lines) == 1 and "cannot resolve the source credentials" in lines[0], result.stderr
