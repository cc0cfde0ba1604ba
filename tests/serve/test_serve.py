"""``brs-run --serve``: one credential server for the launch tree, any language.

Real clients nobody here wrote sign against the local moto STS/S3: patched boto3
children, boto3 and the AWS CLI v1 without the bootstrap, pyarrow's S3FileSystem
(the AWS C++ SDK), the AWS SDK for JavaScript v3. Proof of identity is server-side:
GetCallerIdentity's ARN and the access key moto recorded for each request.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from launching import ASSUMED, BRS_RUN, JS_CLIENT, MODULE, Launch, write
from launching import ROLE as ROLE_ARN
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, FAKE_SOURCE_SECRET_ACCESS_KEY, StsServer

from brs_autopatch.serve.awsfiles import stripped_config, stripped_credentials
from brs_autopatch.serve.awssource import CREDENTIAL_KEYS
from brs_autopatch.serve.start import program_environment

if TYPE_CHECKING:
    import threading

    from brs_autopatch.credentials.engine import RoleCredentials
    from brs_autopatch.serve.role import Credentials

SERVE = (*MODULE, "--serve")
BUCKET = "brs-serve-bucket"

IDENTITY = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
PYARROW_CLIENT = f"""
import os, sys, time
from pyarrow import fs
s3 = fs.S3FileSystem(region="us-east-1", endpoint_override=os.environ["AWS_ENDPOINT_URL"])
for _ in range(int(sys.argv[1])):
    with s3.open_input_stream("{BUCKET}/key.txt") as handle:
        print(handle.read().decode())
    time.sleep(float(sys.argv[2]))
"""
BOTO3_LOOP = """
import sys, time, boto3
client = boto3.client("sts")
for _ in range(int(sys.argv[1])):
    print(client.get_caller_identity()["Arn"], flush=True)
    time.sleep(float(sys.argv[2]))
"""


def pyarrow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


@pytest.fixture
def bucket(sts: StsServer, aws_env: dict[str, str]) -> str:
    """An object in moto's S3, written with the source credentials."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="key.txt", Body=b"hello from s3")
    return BUCKET


def role_keys(sts: StsServer, key: str) -> set[str]:
    return {str(call["access_key_id"]) for call in sts.calls(key)}


# -- every client signs as the role -------------------------------------------------------------

def test_every_client_signs_as_the_role_across_refreshes(
    launch: Launch, sts: StsServer, tmp_path: Path, node: str, bucket: str
) -> None:
    if not pyarrow_available():
        pytest.fail("pyarrow is not installed (it is in the test extra)")
    sts.set_duration_override(12)
    write(tmp_path / "client.js", JS_CLIENT)
    write(tmp_path / "pa.py", PYARROW_CLIENT)
    write(tmp_path / "loop.py", BOTO3_LOOP)
    # Each client outlives its first credentials (12 s; the server refreshes every ~2 s).
    script = (
        "set -e\n"
        "python loop.py 3 7 > patched.out &\n"
        # A patched parent, its child without the bootstrap (BRS_PROPAGATE=false).
        "BRS_PROPAGATE=false python -c 'import subprocess, sys; sys.exit(subprocess.call("
        "[sys.executable, \"loop.py\", \"3\", \"7\"], stdout=open(\"unpatched.out\", \"w\")))' &\n"
        "node client.js 3 7 > node.out &\n"
        "python pa.py 3 7 > pyarrow.out &\n"
        "for i in 1 2 3; do env -u BRS_BOOTSTRAP aws sts get-caller-identity --query Arn --output text;"
        " sleep 5; done > cli.out\n"
        "wait\n"
    )
    result = launch([*SERVE, "sh", "-c", script], timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("patched", "unpatched", "node", "cli"):
        assert (tmp_path / f"{name}.out").read_text().split() == [ASSUMED] * 3, name
    assert (tmp_path / "pyarrow.out").read_text().split("\n")[:3] == ["hello from s3"] * 3
    # Server-side: nothing but role keys signed, several of them (refreshes happened).
    signers = role_keys(sts, "sts:GetCallerIdentity") | role_keys(sts, "s3:GET")
    assert FAKE_SOURCE_ACCESS_KEY_ID not in signers
    assert all(key.startswith("ASIA") for key in signers)
    assert len(role_keys(sts, "s3:GET")) >= 2, "pyarrow did not pick up refreshed credentials"
    assert len(role_keys(sts, "sts:GetCallerIdentity")) >= 3
    assert "Traceback" not in result.stderr


def test_source_from_a_profile_never_reaches_unpatched_clients(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    credentials = write(tmp_path / "aws" / "credentials", (
        f"[src]\naws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}\n"
        f"aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}\n"
        "[default]\naws_access_key_id = AKIDOTHER00000000000\naws_secret_access_key = other\n"
        "[other]\naws_access_key_id = AKIDOTHER11111111111\naws_secret_access_key = other\n"
    ))
    config = write(tmp_path / "aws" / "config", (
        "[profile src]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n"
        "[default]\nregion = us-west-2\n"
    ))
    show = (
        "import os, botocore.session as b; s = b.get_session();"
        " print(s.get_config_variable('region'), s.get_credentials().method, 'AWS_PROFILE' in os.environ)"
    )
    env = {
        "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_DEFAULT_REGION": None,
        "AWS_PROFILE": "src", "AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config),
    }
    script = (
        f"env -u BRS_BOOTSTRAP python -c \"{show}\"; "
        "env -u BRS_BOOTSTRAP aws sts get-caller-identity --query Arn --output text; "
        "env -u BRS_BOOTSTRAP aws sts get-caller-identity --query Arn --output text --profile src; "
        "env -u BRS_BOOTSTRAP aws sts get-caller-identity --query Arn --output text --profile other"
        " --region us-east-1; "
        "cat \"$AWS_CONFIG_FILE\" \"$AWS_SHARED_CREDENTIALS_FILE\""
    )
    result = launch([*SERVE, "sh", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The selected profile's region (and other settings), the server's credentials.
    assert lines[0] == "eu-west-1 container-role False"
    assert lines[1] == ASSUMED
    # The source profile named explicitly: its keys are gone from the copies, it
    # resolves to the server's role; another identity named explicitly: still possible.
    assert lines[2] == ASSUMED
    assert lines[3] != ASSUMED
    assert "AKIDOTHER11111111111" in role_keys(sts, "sts:GetCallerIdentity"), (result.stdout, result.stderr)
    assert "addressing_style" in result.stdout
    assert "AKIDOTHER00000000000" not in result.stdout
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert FAKE_SOURCE_ACCESS_KEY_ID not in role_keys(sts, "sts:GetCallerIdentity")
    assert FAKE_SOURCE_ACCESS_KEY_ID not in result.stdout


JS_PROFILE_CLIENT = """
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
(async () => {
  const answer = await new STSClient({ region: "us-east-1" }).send(new GetCallerIdentityCommand({}));
  console.log(answer.Arn);
})().catch((error) => { console.log("error " + error.name); });
"""
BOTOCORE_PROFILE_CLIENT = """
import sys, botocore.session
for profile in sys.argv[1:]:
    try:
        session = botocore.session.Session(profile=profile or None)
        print(session.create_client("sts", region_name="us-east-1").get_caller_identity()["Arn"])
    except Exception as error:
        print("error", type(error).__name__)
"""
OTHER_KEY = "AKIDOTHER11111111111"
# Every place an SDK may find the source identity, as botocore and the JavaScript SDK
# spell them: [DEFAULT] (botocore puts it in every section), default spelled three
# ways, the selected profile, a twin holding the same key, a chain ending in it.
TRICKY_CONFIG = f"""[DEFAULT]
aws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}
aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}
[profile "default"]
region = us-west-2
[profile  src]
region = eu-west-1
[profile.default]
aws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}
aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}
[profile chain]
role_arn = arn:aws:iam::123456789012:role/chained
source_profile = twin
[profile other]
region = ap-south-1
aws_access_key_id = {OTHER_KEY}
aws_secret_access_key = other
"""
TRICKY_CREDENTIALS = f"""[src]
aws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}
aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}
[twin]
aws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}
aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}
[profile default]
aws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}
aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}
"""


def test_no_sdk_finds_the_source_in_any_profile_of_the_copies(
    launch: Launch, sts: StsServer, tmp_path: Path, node: str
) -> None:
    (tmp_path / "client.js").write_text(JS_PROFILE_CLIENT)
    (tmp_path / "client.py").write_text(BOTOCORE_PROFILE_CLIENT)
    profiles = ["", "default", "src", "twin", "chain", "other", "DEFAULT", "profile default"]
    env = {
        "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_DEFAULT_REGION": None,
        "AWS_PROFILE": "nothing-there", "AWS_DEFAULT_PROFILE": "src",  # botocore reads this one first
        "AWS_CONFIG_FILE": str(write(tmp_path / "aws" / "config", TRICKY_CONFIG)),
        "AWS_SHARED_CREDENTIALS_FILE": str(write(tmp_path / "aws" / "credentials", TRICKY_CREDENTIALS)),
    }
    script = (
        "for p in '' default src twin chain other DEFAULT 'profile default'; do"
        " AWS_PROFILE=\"$p\" node client.js; done;"
        " env -u BRS_BOOTSTRAP python client.py '' default src twin chain other DEFAULT 'profile default';"
        " env -u BRS_BOOTSTRAP python -c 'import boto3; print(boto3.Session().region_name)'"
    )
    result = launch([*SERVE, "sh", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    answers = dict(zip(profiles, lines[:8], strict=True)), dict(zip(profiles, lines[8:16], strict=True))
    for sdk in answers:  # the JavaScript SDK, then botocore
        assert sdk.pop("other") == "arn:aws:sts::123456789012:user/moto", sdk  # another identity: stays
        for name in ("DEFAULT", "profile default"):  # no profile in the copies; botocore says so
            assert sdk.pop(name) in {ASSUMED, "error ProfileNotFound"}, sdk
        assert set(sdk.values()) == {ASSUMED}, sdk
    assert lines[16] == "eu-west-1"  # [profile  src]'s region: AWS_DEFAULT_PROFILE wins, as in botocore
    # Server-side: the source key signed the server's AssumeRole calls and nothing else.
    assert FAKE_SOURCE_ACCESS_KEY_ID not in role_keys(sts, "sts:GetCallerIdentity")
    for call in sts.calls("sts:AssumeRole"):
        assert call["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID or call["params"]["RoleArn"] == ROLE_ARN
    assert OTHER_KEY in role_keys(sts, "sts:GetCallerIdentity")


def test_the_source_behind_brs_profile_stays_with_the_server(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    # BRS_PROFILE=prod: base's keys call STS. Patched and unpatched children get prod's
    # role; naming base or prod explicitly gives the role too, never base's keys.
    config = write(tmp_path / "aws" / "config", (
        "[profile prod]\nrole_arn = arn:aws:iam::123456789012:role/prod\nsource_profile = base\n"
    ))
    credentials = write(tmp_path / "aws" / "credentials", (
        f"[base]\naws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}\n"
        f"aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}\n"
    ))
    env = {
        "BRS_PROFILE": "prod", "BRS_ROLE_ARN": None, "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
        "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
    }
    (tmp_path / "client.py").write_text(BOTOCORE_PROFILE_CLIENT)
    script = f"python -c \"{IDENTITY}\"; env -u BRS_BOOTSTRAP python client.py '' base prod"
    result = launch([*SERVE, "sh", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"arn:aws:sts::123456789012:assumed-role/prod/brs-test"}
    assert FAKE_SOURCE_ACCESS_KEY_ID not in role_keys(sts, "sts:GetCallerIdentity")


SECRET_LINE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETLINE"


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_fifos_devices_and_directories_are_skipped_as_botocore_skips_them(
    launch: Launch, tmp_path: Path, variable: str
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    for path in (fifo, Path("/dev/zero"), tmp_path / "dir"):
        started = time.monotonic()
        result = launch([*SERVE, "python", "-c", IDENTITY], env={variable: str(path)}, timeout=30)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, (path, result.stderr)
        assert result.stdout.strip() == ASSUMED, path
        assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
        assert elapsed < 15, (path, elapsed)  # no hang (the in-process read is timed in test_awsfiles)


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_a_malformed_aws_file_exits_2_with_its_line_number_not_its_text(
    launch: Launch, tmp_path: Path, variable: str
) -> None:
    path = write(tmp_path / "aws" / "file", f"[default]\nregion = eu-west-1\n{SECRET_LINE}\n")
    result = launch([*SERVE, "python", "-c", "print('started')"], env={variable: str(path)}, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"brs-run: --serve: the AWS file {path} ({variable}) does not parse at line 3;"
        " botocore would refuse it too"
    ]
    assert SECRET_LINE not in result.stderr


def test_a_selected_profile_gives_its_settings_not_its_credentials(tmp_path: Path) -> None:
    text = (
        "[profile dev]\nregion = eu-west-1\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = base\n"
        "output = json\n[profile base]\naws_access_key_id = AKIDBASE\n"
        "[default]\nregion = us-east-2\naws_secret_access_key = s\n"
        "[sso-session corp]\nsso_start_url = https://x\n[services local]\ns3 =\n  endpoint_url = http://x\n"
    )
    out = stripped_config(text, "dev")
    default = out.split("[profile dev]")[0]
    assert "region = eu-west-1" in default and "output = json" in default
    assert "role_arn" not in default and "source_profile" not in default
    assert "sso-session" not in out and "[services local]" in out
    assert stripped_credentials("[default]\naws_access_key_id = A\n[x]\naws_access_key_id = B\n").strip() == (
        "[x]\naws_access_key_id = B"
    )


def test_the_program_environment_holds_no_source_identity_and_no_server_secret(tmp_path: Path) -> None:
    # docs/serving.md "The source identity never reaches the program": every variable it lists is
    # removed, and so are the BRS_* settings only the server needs; the table's variables
    # are set (the token file 0600). Pure: what serve.start hands to the program.
    removed = [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "BRS_EXTERNAL_ID", "BRS_ASSUME_ROLE_KWARGS", "BRS_MFA_SERIAL", "BRS_MFA_TOKEN_COMMAND",
        "BRS_MFA_TIMEOUT_SECONDS", "BRS_CACHE_DIR",
    ]
    env = {name: "source-value" for name in removed}
    env |= {"HOME": str(tmp_path), "AWS_DEFAULT_REGION": "eu-west-1", "BRS_ROLE_ARN": "arn:role"}
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    child = program_environment(env, "http://127.0.0.1:1/credentials", "t" * 64, str(workdir))
    assert not set(removed) & set(child), sorted(set(removed) & set(child))
    assert "source-value" not in child.values()
    assert child["AWS_DEFAULT_REGION"] == "eu-west-1"  # settings stay
    assert child["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://127.0.0.1:1/credentials"
    assert child["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "t" * 64
    token_file = Path(child["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
    assert token_file.read_text() == "t" * 64 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    copies = {Path(child[name]).parent for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    assert copies == {workdir}
    assert (child["BRS_METHOD"], child["BRS_DEFER_REFRESH"]) == ("served", "true")


_names = st.sampled_from([*sorted(CREDENTIAL_KEYS), "region", "output", "retry_mode", "ca_bundle"])
_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/:", min_size=1, max_size=12)


@hypothesis_settings(deadline=None)
@given(st.dictionaries(_names, _values, max_size=8), st.sampled_from(["default", "dev"]))
def test_stripped_config_keeps_settings_and_drops_every_credential_key(
    settings: dict[str, str], profile: str
) -> None:
    section = "default" if profile == "default" else f"profile {profile}"
    text = f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    import configparser

    parser = configparser.RawConfigParser()
    parser.read_string(stripped_config(text, profile))
    default = dict(parser.items("default"))
    assert not set(default) & CREDENTIAL_KEYS
    assert default == {key: value for key, value in settings.items() if key not in CREDENTIAL_KEYS}


# -- one AssumeRole per refresh period for the whole tree ---------------------------------------

def _tree_processes(url: str) -> dict[int, dict[str, str]]:
    """pid -> environment of every process whose environment names this server."""
    found: dict[int, dict[str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)
        if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") == url:
            found[int(entry)] = env
    return found


def test_a_tree_of_ten_clients_makes_one_assume_role_per_refresh_period(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path, node: str, bucket: str
) -> None:
    if not pyarrow_available():
        pytest.fail("pyarrow is not installed (it is in the test extra)")
    sts.set_duration_override(12)
    seconds, gap = 60, 1.0
    rounds = int(seconds / gap)
    write(tmp_path / "client.js", JS_CLIENT)
    write(tmp_path / "pa.py", PYARROW_CLIENT)
    write(tmp_path / "loop.py", BOTO3_LOOP)
    script = "".join(f"python loop.py {rounds} {gap} > py{index}.out &\n" for index in range(8))
    script += f"node client.js {rounds} {gap} > node.out &\npython pa.py {rounds} {gap} > pyarrow.out &\n"
    script += "echo \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" > url\nwait\n"
    env = dict(base_env)
    proc = subprocess.Popen(
        [*SERVE, "sh", "-c", script], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        url_file = tmp_path / "url"
        deadline = time.monotonic() + 30
        while not (url_file.exists() and url_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        url = url_file.read_text().strip()
        # Until the shell and its 10 clients are all up (bounded): a fixed pause saw fewer
        # on a loaded machine. They run for about 60 s, so none has ended yet.
        tree = _tree_processes(url)
        deadline = time.monotonic() + 45
        while len(tree) < 11 and time.monotonic() < deadline:
            time.sleep(0.2)
            tree = _tree_processes(url)
        _, err = proc.communicate(timeout=seconds + 90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert len(tree) >= 11, f"expected the shell and 10 clients, saw {len(tree)}"
    for pid, process_env in tree.items():
        assert FAKE_SOURCE_ACCESS_KEY_ID not in "\0".join(f"{k}={v}" for k, v in process_env.items()), pid
    for index in range(8):
        assert set((tmp_path / f"py{index}.out").read_text().split()) == {ASSUMED}
    assert set((tmp_path / "node.out").read_text().split()) == {ASSUMED}
    assert set((tmp_path / "pyarrow.out").read_text().split("\n")) <= {"hello from s3", ""}
    times = [call["time"] for call in sts.calls("sts:AssumeRole")]
    span = times[-1] - times[0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The period is the server's: lifetime - advisory - lead, about 2 s here.
    # Each refresh lands at a random point of the window's upper half (jitter): the
    # periods vary, so judge the mean and the shortest gap.
    period = span / (len(times) - 1)
    print(f"tree: {len(times)} AssumeRole over {span:.1f} s, period {period:.2f} s, {len(tree)} processes")
    assert 1.0 < period < 6.0, gaps
    assert min(gaps) > period * 0.5, gaps  # never two for one period, whatever the tree's size
    served_calls = len(sts.calls("sts:GetCallerIdentity")) + len(sts.calls("s3:GET"))
    assert served_calls >= 9 * rounds * 0.8
    assert "Traceback" not in err


# -- lifecycle ----------------------------------------------------------------------------------

def _server_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (found through /proc/net/tcp)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inode = fields[9]
    if inode is None:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") == f"socket:[{inode}]":
                        return int(entry)
    return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@contextlib.contextmanager
def _background(cmd: list[str], env: Mapping[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def test_sigkill_of_the_program_ends_the_server_without_a_zombie(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    program = (
        "import os, sys, time\n"
        "print(os.getpid(), os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
        " os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], flush=True)\n"
        "time.sleep(60)\n"
    )
    with _background([*SERVE, "python", "-c", program], base_env, tmp_path) as proc:
        assert proc.stdout is not None
        pid, url, token_file = proc.stdout.readline().split()
        assert int(pid) == proc.pid  # exec semantics: the program is brs-run's process
        server = _server_pid(int(url.rsplit(":", 1)[1].split("/")[0]))
        assert server is not None and server != proc.pid
        assert _state(server) in ("S", "R")
        directory = Path(token_file).parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(Path(token_file).stat().st_mode) == 0o600
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # The server notices at once (pidfd) or within POLL_SECONDS; the bound only has
        # to tell "ended" from "outlives its program" (which sleeps 60 s) on a loaded machine.
        deadline = time.monotonic() + 15.0
        while _state(server) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(server) is None, f"server {server} still there: state {_state(server)}"
        assert not directory.exists()


def test_exit_codes_signals_and_wait_pass_through(launch: Launch) -> None:
    assert launch([*SERVE, "sh", "-c", "exit 7"]).returncode == 7
    result = launch([*SERVE, "sh", "-c", "echo $$; kill -TERM $$"])
    assert result.returncode == -signal.SIGTERM
    assert int(result.stdout) == result.pid
    # The server is no child of the program: a program reaping its children never gets it.
    result = launch([*SERVE, "python", "-c", (
        "import os\ntry:\n    print(os.wait())\nexcept ChildProcessError:\n    print('no children')"
    )])
    assert (result.returncode, result.stdout.strip()) == (0, "no children"), result.stderr


def test_served_python_children_plan_with_their_first_session(launch: Launch, sts: StsServer) -> None:
    # The launcher checks the settings --serve gives the children (BRS_METHOD=served) and
    # fingerprints them (brs_autopatch.config.fingerprint): import boto3 loads no plan, methods, factory.
    program = (
        "import sys\nours = lambda: sorted(m for m in sys.modules if m.startswith('brs_autopatch.'))\n"
        "import boto3\nprint(ours())\n"
        "print(boto3.client('sts').get_caller_identity()['Arn'])\nprint(ours())\n"
    )
    result = launch([*SERVE, "python", "-c", program])
    assert result.returncode == 0, result.stderr
    imported, arn, after = result.stdout.splitlines()
    planning = ("brs_autopatch.plan", "brs_autopatch.methods", "brs_autopatch.build")
    assert "brs_autopatch.patch.deferred" in imported
    assert not any(f"'{name}'" in imported for name in planning)
    assert arn == ASSUMED and all(f"'{name}'" in after for name in planning)
    assert sts.count("sts:AssumeRole") == 1


def test_stdout_is_the_programs_alone(launch: Launch) -> None:
    # The server holds no copy of stdout: a capture ends when the program does.
    result = launch([*SERVE, "sh", "-c", "echo out"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "")


# -- security -----------------------------------------------------------------------------------

PROBE = """
import json, os, socket, urllib.error, urllib.request
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = open(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read()
assert token == os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] and len(token) == 64
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(headers, target=url):
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
results = [get({}), get({}), get({"Authorization": "x" * 64}), get({"Authorization": token[:-1]}),
           get({"Authorization": token}), get({"Authorization": token}, url + "/../other")]
port = int(url.rsplit(":", 1)[1].split("/")[0])
try:
    socket.create_connection(("127.0.0.2", port), timeout=2).close()
    other = "connected"
except OSError:
    other = "refused"
print(json.dumps({"results": results, "other": other, "token": token}))
"""


def test_a_wrong_or_missing_token_gets_no_credentials(launch: Launch, sts: StsServer) -> None:
    result = launch([*SERVE, "python", "-c", PROBE], env={"BRS_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    statuses = [status for status, _ in seen["results"]]
    assert statuses == [401, 401, 403, 403, 200, 404]
    for status, body in seen["results"]:
        assert ("AccessKeyId" in body) == (status == 200)
    answer = json.loads(seen["results"][4][1])
    assert set(answer) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "BrsIssuedAt"}
    assert seen["other"] == "refused"  # bound to 127.0.0.1, not the whole loopback net
    # Refusals logged once per peer and kind, never with the token or a secret.
    assert result.stderr.count("without a token") == 1
    assert result.stderr.count("with a wrong token") == 1
    assert seen["token"] not in result.stderr
    assert answer["SecretAccessKey"] not in result.stderr


def test_listening_socket_is_loopback_only(base_env: dict[str, str], tmp_path: Path) -> None:
    program = (
        "import os, time; print(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'], flush=True); time.sleep(30)"
    )
    with _background([*SERVE, "python", "-c", program], base_env, tmp_path) as proc:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1].split("/")[0])
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listening == [f"0100007F:{port:04X}"]
        tcp6 = Path("/proc/net/tcp6")
        if tcp6.exists():
            assert f":{port:04X} " not in tcp6.read_text()


# -- start-up failures --------------------------------------------------------------------------

def test_failed_first_credentials_exit_2_before_the_program_starts(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    sts.fault("AssumeRole", "access_denied")
    marker = tmp_path / "started"
    result = launch([*SERVE, "--no-defer-refresh", "sh", "-c", f"touch {marker}"])
    assert result.returncode == 2
    assert not marker.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AccessDenied" in lines[0] and lines[0].startswith("brs-run: --serve:"), lines


def test_deferred_first_failure_is_retried_and_logged_once(launch: Launch, sts: StsServer) -> None:
    # The first AssumeRole happens on the first request; it fails once. The server
    # answers 500 (no credentials), botocore's container provider retries a second
    # later, and the server, past its 1 s backoff, assumes the role.
    sts.fault("AssumeRole", "access_denied", count=1)
    result = launch([*SERVE, "sh", "-c", f"env -u BRS_BOOTSTRAP python -c \"{IDENTITY}\""])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED
    assert sts.count("sts:AssumeRole") == 2
    assert result.stderr.count("AccessDenied") == 1, result.stderr


def test_brs_serve_variable_and_nested_launchers(launch: Launch, sts: StsServer) -> None:
    inner = f"{sys.executable} -m brs_autopatch --serve python -c \"{IDENTITY}\""
    result = launch([*MODULE, "sh", "-c", inner], env={"BRS_SERVE": "true"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED
    assert sts.count("sts:AssumeRole") == 1  # the outer server serves the nested tree


def test_brs_run_script_is_installed() -> None:
    assert BRS_RUN.exists(), "pip install -e . did not install brs-run"


def test_socket_helper_finds_this_process() -> None:
    # The lifecycle tests rely on _server_pid: check it on a socket of our own.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        assert _server_pid(listener.getsockname()[1]) == os.getpid()


def test_aws_cli_v2_signs_as_the_role(launch: Launch, sts: StsServer) -> None:
    cli = Path("/usr/bin/aws")
    version = ""
    if cli.exists():
        version = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout
    if not version.startswith("aws-cli/2"):
        pytest.skip("AWS CLI v2 is not installed (Debian: apt-get install awscli)")
    sts.set_duration_override(12)
    # CLI 2.9 (Debian 12) predates AWS_ENDPOINT_URL and the token file: it reads the token variable.
    call = f"{cli} sts get-caller-identity --query Arn --output text --endpoint-url \"$AWS_ENDPOINT_URL\""
    # The server refreshes 2.4-4.6 s after each issue (12 s credentials, jittered): 6 s apart
    # the two calls see two keys.
    result = launch([*SERVE, "sh", "-c", f"{call}; sleep 6; {call}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [ASSUMED, ASSUMED]
    assert result.stderr == ""
    keys = [call["access_key_id"] for call in sts.calls("sts:GetCallerIdentity")]
    assert len(set(keys)) == 2 and FAKE_SOURCE_ACCESS_KEY_ID not in keys


def _credential_server(program: int) -> int | None:
    """The tree's server process (not its supervisor), found by the title it shows in ps."""
    title = f"brs-run: credential server for PID {program}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(title):
                    return int(entry)
    return None


def test_concurrency_is_bounded(base_env: dict[str, str], tmp_path: Path) -> None:
    # Idle connections cost the server no thread (one loop reads them all); requests with
    # the token are answered by at most 32 worker threads, however many come at once.
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    program = (
        "import os, time; print(os.getpid(), os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
        " os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN'], flush=True); time.sleep(30)"
    )
    with _background([*SERVE, "python", "-c", program], base_env, tmp_path) as proc:
        assert proc.stdout is not None
        pid, url, token = proc.stdout.readline().split()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        server = _credential_server(int(pid))
        assert server is not None

        def threads() -> int:
            return len(os.listdir(f"/proc/{server}/task"))

        before = threads()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
        try:
            counts = [threads()]
            for _ in range(10):
                time.sleep(0.05)
                counts.append(threads())
            assert max(counts) <= before, (before, counts)  # no thread per connection
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

            def ask(_: int) -> int:
                request = urllib.request.Request(url, headers={"Authorization": token})
                with opener.open(request, timeout=10) as answer:
                    assert "AccessKeyId" in json.loads(answer.read())
                    return int(answer.status)

            with ThreadPoolExecutor(48) as pool:
                answers = pool.map(ask, range(96))
                busy = [threads()]
                statuses = list(answers)
                busy.append(threads())
            assert statuses == [200] * 96  # answered while 60 idle connections stay open
            # At most 32 workers, plus what the credentials start on first use (a refresher).
            assert max(busy) <= before + 32 + 2, (before, busy)
        finally:
            for connection in idle:
                connection.close()


def test_a_child_whose_server_has_nothing_newer_backs_off() -> None:
    # The server answers the same credentials (its refresh failing): a child inside its
    # window keeps its current credentials and asks again only after a backoff, not
    # on every request.
    from datetime import datetime, timezone

    from brs_autopatch.credentials import backoff as refresh
    from brs_autopatch.credentials.engine import RoleCredentials
    from brs_autopatch.methods.served import fetcher

    issued = 1_800_000_000.0
    now = [issued]
    asked: list[tuple[float, float | None]] = []  # (when, X-Brs-Newer-Than)
    expiry = datetime.fromtimestamp(now[0] + 900, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ask(newer_than: float | None) -> dict[str, object]:
        asked.append((now[0], newer_than))
        return {"AccessKeyId": "ASIAX", "SecretAccessKey": "s", "Token": "t", "Expiration": expiry,
                "BrsIssuedAt": issued}

    child = RoleCredentials(lambda: fetcher(ask, "test"), label="served", clock=lambda: now[0])
    assert child.get_frozen_credentials().access_key == "ASIAX"
    # The child's window starts at a jittered point (600-720 s into these 900 s
    # credentials): go 1 s into it, wherever this run's jitter put it.
    window = child.next_refresh_time()
    assert issued + 600 <= window <= issued + 720, window - issued
    for step in range(10):  # the second before the window: nothing asked
        now[0] = window - 1.0 + step * 0.1
        assert child.get_frozen_credentials().access_key == "ASIAX"
    assert len(asked) == 1
    for step in range(200):
        now[0] = window + 1.0 + step * 0.1
        assert child.get_frozen_credentials().access_key == "ASIAX"
    attempts = [when for when, _ in asked[1:]]
    # 200 requests over 20 s in the window: one attempt at once, then one per backoff
    # (the first 7.5-15 s, the second 15-30 s: past these 20 s), not one per request.
    assert len(attempts) == 2, [when - window for when in attempts]
    assert attempts[0] == window + 1.0
    base = refresh.ADVISORY_BACKOFF_BASE
    assert base / 2 <= attempts[1] - attempts[0] <= base + 0.2, attempts[1] - attempts[0]
    held = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert [newer_than for _, newer_than in asked] == [None, held, held]  # each attempt says what it holds
    assert child.stats.failures == 2


_SLOW: dict[str, object] = {}


def slow_sts() -> dict[str, object]:
    """A credential method (BRS_CUSTOM_METHOD) for the tests below: the 2nd call waits."""
    import threading

    calls = int(str(_SLOW["calls"])) + 1
    _SLOW["calls"] = calls
    if calls == 2:
        entered = _SLOW["entered"]
        release = _SLOW["release"]
        assert isinstance(entered, threading.Event) and isinstance(release, threading.Event)
        entered.set()
        assert release.wait(10)
    clock = _SLOW["clock"]
    assert callable(clock)
    return {"access_key": f"ASIASLOW{calls:012d}", "secret_key": "s", "token": "t",
            "expiry_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock() + 900))}


class _WatchedLock:
    """A lock that tells when a thread other than its holder blocks on it."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._holder: int | None = None
        self.blocked = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        import threading

        me = threading.get_ident()
        if blocking and self._holder not in (None, me):
            self.blocked.set()
        acquired = self._lock.acquire(blocking, timeout)
        if acquired:
            self._holder = me
        return acquired

    def release(self) -> None:
        self._holder = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _slow_server(now: list[float]) -> tuple[Credentials, float]:
    """A server (request-path refresh on a simulated clock) after its first fetch, and
    the expiry of those first credentials as a child holds it."""
    import threading

    from brs_autopatch.config.from_env import from_env
    from brs_autopatch.serve.role import Credentials

    _SLOW.update(calls=0, entered=threading.Event(), release=threading.Event(), clock=lambda: now[0])
    settings = from_env({"BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "test_serve:slow_sts"})
    server = Credentials(settings, clock=lambda: now[0], background=False)
    first = server.answer(None)
    assert str(first["AccessKeyId"]).endswith("1")
    return server, datetime_seconds(first["Expiration"])


def _start_due_refresh(
    now: list[float], credentials: RoleCredentials
) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """Go 1 s into the (jittered) refresh window and start the server's refresh in a thread;
    returns (thread, entered, release): slow_sts sets ``entered`` and waits for ``release``."""
    import threading

    now[0] = credentials.next_refresh_time() + 1.0
    background = threading.Thread(target=credentials.refresh_in_background)
    background.start()
    entered = _SLOW["entered"]
    release = _SLOW["release"]
    assert isinstance(entered, threading.Event) and isinstance(release, threading.Event)
    return background, entered, release


def test_a_child_at_its_window_waits_for_the_refresh_under_way() -> None:
    # The server's background refresh is in flight when a child, holding the old
    # credentials, asks with X-Brs-Newer-Than: the child gets the new ones, and the
    # tree still made one STS call for that period.
    import threading

    now = [1_800_000_000.0]
    server, held = _slow_server(now)
    credentials = server.build()
    lock = _WatchedLock()
    credentials._refresh_lock = lock  # type: ignore[assignment]
    # The server's refresh is due (at a jittered point of its window).
    background, entered, release = _start_due_refresh(now, credentials)
    try:
        assert entered.wait(10), "the due refresh did not start"
        answers: list[dict[str, object]] = []
        done = threading.Event()

        def child_asks() -> None:
            try:
                answers.append(server.answer(held))
            finally:
                done.set()

        child = threading.Thread(target=child_asks)
        child.start()
        # Until the child either waits for the refresh under way or answers (bounded).
        deadline = time.monotonic() + 10
        while not (lock.blocked.is_set() or done.is_set()) and time.monotonic() < deadline:
            lock.blocked.wait(0.01)
        assert not done.is_set(), f"answered {answers} while a refresh was under way"
        assert lock.blocked.is_set(), "the child neither waited nor answered"
    finally:
        release.set()
        background.join(10)
    child.join(10)
    assert answers and str(answers[0]["AccessKeyId"]).endswith("2")
    assert _SLOW["calls"] == 2


def test_a_refresh_landing_while_a_child_is_answered_is_not_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The refresh under way ends right after the server read the credentials for a
    # child holding the old ones: the child gets the new credentials (no second STS
    # call), not the old ones, which it would take for "nothing newer" and back off.

    now = [1_800_000_000.0]
    server, held = _slow_server(now)
    credentials = server.build()
    background, entered, release = _start_due_refresh(now, credentials)
    read = credentials.snapshot
    reads: list[Mapping[str, object] | None] = []

    def read_then_let_the_refresh_land() -> Mapping[str, object] | None:
        metadata = read()
        reads.append(metadata)
        if len(reads) == 1:
            release.set()
            background.join(10)
            assert not background.is_alive() and _SLOW["calls"] == 2
        return metadata

    try:
        assert entered.wait(10), "the due refresh did not start"
        monkeypatch.setattr(credentials, "snapshot", read_then_let_the_refresh_land)
        answer = server.answer(held)
    finally:
        release.set()
        background.join(10)
    first_read = reads[0]
    assert first_read is not None and str(first_read["access_key"]).endswith("1")
    assert str(answer["AccessKeyId"]).endswith("2"), answer["AccessKeyId"]
    assert _SLOW["calls"] == 2


def datetime_seconds(text: object) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def test_server_that_cannot_start_exits_2_before_the_program(launch: Launch, tmp_path: Path) -> None:
    # Six descriptors: enough for brs-run, none left for the server's /dev/null.
    marker = tmp_path / "started"
    result = launch(["sh", "-c", f"ulimit -n 6; exec {' '.join(SERVE)} sh -c 'touch {marker}'"])
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.startswith("brs-run: --serve: "), result.stderr
    assert "the credential server cannot start" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("pidfd", [True, False])
def test_the_watcher_sees_an_end_and_counts_a_zombie_as_ended(
    pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brs_autopatch.serve import watch

    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)  # the fallback: polling
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        wait = watch.watcher(child.pid)
        assert not wait(0.05)
        assert child.stdin is not None
        child.stdin.close()  # the child exits, and stays a zombie until reaped below
        deadline = time.monotonic() + 10
        while not wait(0.05):
            assert time.monotonic() < deadline
        assert _state(child.pid) == "Z"
    finally:
        child.wait(10)


def test_the_endpoint_answer_reads_back_as_the_server_wrote_it() -> None:
    # Both ends import brs_autopatch.methods.endpoint: what the server writes, the client
    # reads back whole; an answer without a required field is no credentials.
    from brs_autopatch.methods import endpoint

    body = endpoint.answer("AKIA", "secret", "token", 1.7e9, issued_at=1_699_996_400, account_id="1")
    assert json.loads(json.dumps(body))["Expiration"] == "2023-11-14T22:13:20Z"
    assert endpoint.metadata(json.loads(json.dumps(body))) == {
        "access_key": "AKIA", "secret_key": "secret", "token": "token",
        "expiry_time": "2023-11-14T22:13:20Z", "issued_at": 1_699_996_400.0, "account_id": "1",
    }
    for field in endpoint.FIELDS:
        assert endpoint.metadata({key: value for key, value in body.items() if key != field}) is None
    held = 1_700_000_000.25
    assert endpoint.newer_than(endpoint.newer_than_value(held)) == held
    assert endpoint.newer_than("inf") is None and endpoint.newer_than("soon") is None
