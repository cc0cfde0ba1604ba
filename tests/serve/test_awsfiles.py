"""The AWS file copies under ``brs-run --serve`` (brs_autopatch.serve.awsfiles), checked by botocore.

Generated config and credentials files (every spelling of the default profile, ``[DEFAULT]``,
``source_profile`` chains, ``credential_process``, profile selection by
``AWS_DEFAULT_PROFILE``/``AWS_PROFILE``) go through the stripping; then an *unpatched*
botocore resolves every profile of the copies against the local moto STS. Proof is
server-side and from botocore itself: the key each resolution ends with, the key that
signed each AssumeRole and the role it asked for — none may be the source's.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from stsclient import StsServer

from brs_autopatch.serve import awsfiles, awsread, awssource

SRC = "AKIDSOURCE0000000000"
OTHER = "AKIDOTHER00000000000"
KEYS = {SRC: "source-secret-value", OTHER: "other-secret-value"}
PROCESS_KEYS = ["AKIDPROCESSONE000000", "AKIDPROCESSTWO000000"]
NAMES = ["default", "src", "other", "chain"]
ROLES = ["arn:aws:iam::123456789012:role/one", "arn:aws:iam::123456789012:role/two"]
REGIONS = ["eu-west-1", "us-west-2", "ap-south-1"]
# How botocore spells a config profile: anything starting "profile" that shlex splits in two.
SPELLINGS = {
    "default": ["default", "profile default", 'profile "default"', "profile  default",
                "profile 'default'", "profiles default", "profile\tdefault"],
    **{name: [f"profile {name}", f'profile "{name}"', f"profile  {name}"] for name in NAMES[1:]},
}
PROCESS = """import json, sys
print(json.dumps({"Version": 1, "AccessKeyId": sys.argv[1], "SecretAccessKey": "s" * 20}))
"""


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def resolve(
    sts: StsServer, files: Mapping[str, str | None], profile: str | None
) -> tuple[str | None, set[tuple[str, str]]]:
    """(final access key, {(AssumeRole signer, RoleArn)}) as an unpatched botocore resolves it."""
    before = len(sts.calls("sts:AssumeRole"))
    key = None
    cleared = dict.fromkeys(
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
         "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION"]
    )
    with environment({**cleared, **files}):
        try:
            session = botocore.session.Session(profile=profile)
            credentials = session.get_credentials()
            if credentials is not None:
                key = credentials.get_frozen_credentials().access_key
        except Exception:  # a profile that resolves to nothing usable: no identity at all
            key = None
    calls = sts.calls("sts:AssumeRole")[before:]
    return key, {(str(call["access_key_id"]), str(call["params"].get("RoleArn"))) for call in calls}


def region_of(files: Mapping[str, str | None]) -> str | None:
    with environment({"AWS_DEFAULT_REGION": None, "AWS_PROFILE": None, "AWS_DEFAULT_PROFILE": None, **files}):
        try:
            value = botocore.session.Session().get_config_variable("region")
        except Exception:
            return "<error>"
    return value if isinstance(value, str) else None


@st.composite
def profile_body(draw: st.DrawFn, name: str, process: str) -> dict[str, dict[str, str]]:
    """A profile's settings, split between the config file and the credentials file."""
    config: dict[str, str] = {}
    credentials: dict[str, str] = {}
    key = draw(st.sampled_from([None, SRC, OTHER]))
    if key is not None:
        where = draw(st.sampled_from([config, credentials]))
        where.update(aws_access_key_id=key, aws_secret_access_key=KEYS[key])
    if draw(st.booleans()):
        config["role_arn"] = draw(st.sampled_from(ROLES))
        config["source_profile"] = draw(st.sampled_from([n for n in NAMES if n != name]))
    if draw(st.integers(0, 4)) == 0:
        # What a process prints is unknown until it runs: its keys are its own (see the
        # docs/serving.md: static keys equal to a source process's output are not recognised).
        config["credential_process"] = f"{sys.executable} {process} {draw(st.sampled_from(PROCESS_KEYS))}"
    if draw(st.booleans()):
        draw(st.sampled_from([config, credentials]))["region"] = draw(st.sampled_from(REGIONS))
    return {"config": config, "credentials": credentials}


def section(name: str, values: Mapping[str, str]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())


@st.composite
def world(draw: st.DrawFn, process: str) -> dict[str, Any]:
    config, credentials = [], []
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4)):
        for _ in range(draw(st.integers(1, 2 if name == "default" else 1))):
            body = draw(profile_body(name, process))
            config.append(section(draw(st.sampled_from(SPELLINGS[name])), body["config"]))
            if body["credentials"]:
                credentials.append(section(name, body["credentials"]))
    if draw(st.booleans()):  # configparser defaults: botocore puts them in every section
        key = draw(st.sampled_from([SRC, OTHER]))
        defaults = {"aws_access_key_id": key, "aws_secret_access_key": KEYS[key]}
        draw(st.sampled_from([config, credentials])).insert(0, section("DEFAULT", defaults))
    if draw(st.booleans()):  # a spelling the JavaScript SDK reads as default in credentials
        spelled = {"aws_access_key_id": SRC, "aws_secret_access_key": "s"}
        credentials.append(section("profile default", spelled))
    env = {
        "AWS_PROFILE": draw(st.sampled_from([None, *NAMES])),
        "AWS_DEFAULT_PROFILE": draw(st.sampled_from([None, None, *NAMES])),
        "AWS_ACCESS_KEY_ID": draw(st.sampled_from([None, None, SRC])),
    }
    # configparser refuses a section twice (botocore too): keep the first of each name.
    return {"config": _unique(config), "credentials": _unique(credentials), "env": env}


def _unique(sections: list[str]) -> str:
    seen: set[str] = set()
    out = []
    for text in sections:
        header = text.split("\n", 1)[0]
        if header not in seen:
            seen.add(header)
            out.append(text)
    return "".join(out)


@pytest.fixture
def process_script(tmp_path: Path) -> str:
    path = tmp_path / "process.py"
    path.write_text(PROCESS)
    return str(path)


def test_generated_files_never_resolve_the_source_identity(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, process_script: str
) -> None:
    counter = iter(range(10**6))

    @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(world(process_script))
    def check(case: dict[str, Any]) -> None:
        base = tmp_path / f"case{next(counter)}"
        base.mkdir()
        (base / "config").write_text(case["config"])
        (base / "credentials").write_text(case["credentials"])
        original_files = {
            "AWS_CONFIG_FILE": str(base / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(base / "credentials")
        }
        env = {name: value for name, value in case["env"].items() if value is not None}
        # The source, as an unpatched botocore in brs-run's environment resolves it.
        source_env: dict[str, str | None] = {**original_files, **case["env"]}
        if "AWS_ACCESS_KEY_ID" in env:
            source_env["AWS_SECRET_ACCESS_KEY"] = KEYS[SRC]
        with environment(source_env):
            source_profile = botocore.session.Session().get_config_variable("profile")
        source_key, source_calls = resolve(sts, source_env, source_profile)
        if "AWS_ACCESS_KEY_ID" in env:
            source_key, source_calls = SRC, set()
        source_keys = {key for key in [source_key] if key and not key.startswith("ASIA")}
        source_keys |= {signer for signer, _ in source_calls}
        source_roles = {role for _, role in source_calls}

        config, credentials = awsfiles.program_files({**env, **original_files, "HOME": str(base)})
        (base / "config.copy").write_text(config)
        (base / "credentials.copy").write_text(credentials)
        copies = {"AWS_CONFIG_FILE": str(base / "config.copy"),
                  "AWS_SHARED_CREDENTIALS_FILE": str(base / "credentials.copy")}
        with environment(copies):
            profiles = botocore.session.Session().available_profiles
        for profile in [None, *profiles]:
            key, calls = resolve(sts, copies, profile)
            where = f"profile {profile!r} of the copies\n{config}\n{credentials}"
            assert key not in source_keys, where
            assert not {signer for signer, _ in calls} & source_keys, where
            assert not {role for _, role in calls} & source_roles, where
            assert "DEFAULT" not in config + credentials
        # The program's region is the one botocore would have picked for the source.
        selection = {name: value for name, value in case["env"].items() if name != "AWS_ACCESS_KEY_ID"}
        expected = region_of({**original_files, **selection})
        if expected != "<error>":
            assert region_of(copies) == expected, (case, config)

    check()


def test_precedence_follows_botocore_default_profile_before_profile() -> None:
    # botocore's configprovider reads AWS_DEFAULT_PROFILE first; the first *set* wins.
    assert awssource.selected_profile({"AWS_PROFILE": "a", "AWS_DEFAULT_PROFILE": "b"}) == "b"
    assert awssource.selected_profile({"AWS_PROFILE": "a"}) == "a"
    assert awssource.selected_profile({"AWS_DEFAULT_PROFILE": "", "AWS_PROFILE": "a"}) == "default"
    assert awssource.selected_profile({}) == "default"
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES as variables

    assert variables["profile"][1] == ["AWS_DEFAULT_PROFILE", "AWS_PROFILE"]


def test_sso_web_identity_and_process_of_the_source_go_everywhere() -> None:
    config = (
        "[profile src]\nsso_session = corp\nsso_account_id = 111\nsso_role_name = Admin\nregion = eu-west-1\n"
        "[profile twin]\nsso_session = corp\nsso_account_id = 111\nsso_role_name = Admin\n"
        "[profile reader]\nsso_session = corp\nsso_account_id = 111\nsso_role_name = ReadOnly\n"
        "[profile proc]\ncredential_process = get-keys --me\n"
        "[profile web]\nrole_arn = arn:aws:iam::1:role/w\nweb_identity_token_file = /t\n"
        "[profile web2]\nrole_arn = arn:aws:iam::1:role/w2\nweb_identity_token_file = /t\n"
        "[sso-session corp]\nsso_start_url = https://corp.example/start\nsso_region = eu-west-1\n"
    )
    out = awsfiles.stripped_config(config, "src")
    sections = dict(part.split("]\n", 1) for part in out.strip("[\n").split("\n[") if "]\n" in part)
    assert "sso_account_id" not in sections["profile twin"]  # the same SSO identity
    assert "sso_role_name = ReadOnly" in sections["profile reader"]  # another role: stays
    assert "sso-session corp" in sections  # still used by reader
    assert "credential_process" in sections["profile proc"] and "web_identity" in sections["profile web"]
    # The source's process or web identity, elsewhere: gone there too.
    with_process = config.replace("[profile src]\n", "[profile src]\ncredential_process = get-keys --me\n")
    out = awsfiles.stripped_config(with_process, "src")
    assert "get-keys" not in out
    out = awsfiles.stripped_files(awsfiles.parse_text(config), {}, "default",
                                  awssource.env_material({"AWS_ROLE_ARN": "arn:aws:iam::1:role/w",
                                                         "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}))[0]
    assert "role/w\n" not in out  # the source's web identity and role: gone
    assert "role_arn = arn:aws:iam::1:role/w2\nweb_identity_token_file = /t" in out  # another role: stays


# -- reading safely -------------------------------------------------------------------------------

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


def _kinds(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    directory = tmp_path / "dir"
    directory.mkdir()
    return {"fifo": str(fifo), "zero": "/dev/zero", "directory": str(directory)}


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_fifo_device_and_directory_are_absent_as_for_botocore_and_never_block(
    tmp_path: Path, variable: str
) -> None:
    for kind, path in _kinds(tmp_path).items():
        assert not os.path.isfile(path)  # botocore's test: such a path is no file to it
        result: list[Any] = []

        def read(path: str = path, result: list[Any] = result) -> None:
            result.append(awsfiles.program_files({variable: path}))

        worker = threading.Thread(target=read, daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(timeout=5)
        assert not worker.is_alive(), f"{kind}: reading blocked"
        assert time.monotonic() - started < 1.0, kind
        assert result == [("[default]\n\n", "")], kind
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


def test_a_malformed_line_is_reported_by_number_never_by_text(tmp_path: Path) -> None:
    cases = {
        "no section": f"aws_secret_access_key = {SECRET}\n",
        "no delimiter": f"[default]\nregion = eu-west-1\n{SECRET}\n",
        "nested block": f"[default]\ns3 =\n  {SECRET}\n",
        "duplicate option": f"[default]\naws_secret_access_key = {SECRET}\naws_secret_access_key = x\n",
        "undecodable": f"[default]\nregion = x\naws_secret_access_key = {SECRET}\xff\n",
    }
    lines = {"no section": 1, "no delimiter": 3, "nested block": 3, "duplicate option": 3, "undecodable": 3}
    for name, text in cases.items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(text.encode("latin-1") if name == "undecodable" else text.encode())
        with pytest.raises(awsread.AwsFileError) as caught:
            awsfiles.program_files({"AWS_SHARED_CREDENTIALS_FILE": str(path)})
        message = str(caught.value)
        assert SECRET not in message and "\n" not in message, name
        assert f"{path} (AWS_SHARED_CREDENTIALS_FILE) does not parse at line {lines[name]}" in message, name
        # Raised "from None": no chained configparser error (which quotes the line) either.
        error = caught.value
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), name


def test_a_file_too_large_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(awsread.MAX_BYTES + 1)  # sparse: nothing to read but zeros
    with pytest.raises(awsread.AwsFileError, match=r"\(AWS_CONFIG_FILE\) is larger than 4 MiB"):
        awsfiles.program_files({"AWS_CONFIG_FILE": str(big)})


def test_paths_follow_botocore_expansion_and_an_empty_variable_means_no_file(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[profile x]\nregion = eu-west-1\n")
    env = {"HOME": str(tmp_path), "WHERE": str(tmp_path / ".aws")}
    assert "[profile x]" in awsfiles.program_files(env)[0]
    assert "[profile x]" in awsfiles.program_files({**env, "AWS_CONFIG_FILE": "$WHERE/config"})[0]
    assert "[profile x]" in awsfiles.program_files({**env, "AWS_CONFIG_FILE": "~/.aws/config"})[0]
    assert "[profile x]" not in awsfiles.program_files({**env, "AWS_CONFIG_FILE": ""})[0]


def test_the_source_behind_brs_profile_goes_too(tmp_path: Path) -> None:
    # BRS_PROFILE=prod: prod's source_profile (base) calls STS; the program must not find
    # base's keys, nor prod's role settings, while AWS_PROFILE-less default stays the rule.
    (tmp_path / "config").write_text(
        "[profile prod]\nrole_arn = arn:aws:iam::1:role/prod\nsource_profile = base\nregion = eu-west-1\n"
        "[profile base]\nregion = us-east-2\n[profile keep]\nregion = ap-south-1\n"
    )
    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {SRC}\naws_secret_access_key = s\n"
        f"[keep]\naws_access_key_id = {OTHER}\naws_secret_access_key = o\n"
    )
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "credentials")
    config, credentials = awsfiles.program_files({**env, "BRS_PROFILE": "prod"})
    assert SRC not in credentials and "role_arn" not in config and OTHER in credentials
    # The control: without BRS_PROFILE, base is another identity and stays.
    assert SRC in awsfiles.program_files(env)[1]
