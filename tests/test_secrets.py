"""Secrets never reach our output: damaged STS answers, configured secrets, the last-line scrub.

The fault modes take moto's *real* AssumeRole answer and damage it the way proxies do
(truncated, short body, garbled, an HTML page, wrong content, 200 with an error body);
the harness records the credentials each damaged answer carried (``sts.issued()``), and
the tests look for exactly those values, and for any 16-character piece of them, in
everything the program, our logger and ``brs-run --check`` print.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.parsers import ResponseParserError
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from launching import MODULE, ROLE, Launch
from stsclient import RunPython, StsServer

from brs_autopatch.config.from_env import from_env
from brs_autopatch.credentials import failures
from brs_autopatch.errors import ConfigError, CredentialRefreshError
from brs_autopatch.util import redact

MANGLING = ["truncate", "short_body", "garble", "html", "unparseable", "error_200"]
FRAGMENT = 16  # no piece of a secret this long may appear anywhere
FAKE_SEED = "JBSWY3DPEHPK3PXPFAKESEED7Q"  # a TOTP seed as `oathtool --totp -b SEED` takes it
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def secrets_of(sts: StsServer) -> list[str]:
    """The secret keys and session tokens the damaged answers carried."""
    issued = sts.issued()
    assert issued, "the fault carried no credentials: the test would prove nothing"
    return [creds[name] for creds in issued for name in ("SecretAccessKey", "SessionToken")]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for start in range(0, len(secret) - FRAGMENT + 1):
            piece = secret[start : start + FRAGMENT]
            assert piece not in text, f"a piece of an issued secret leaked: ...{piece}...\n{text}"
        assert quote(secret, safe="") not in text


def where(sts: StsServer) -> str:
    return f"endpoint {sts.url}, region us-east-1"


# -- the program's view: log lines, the exception, an uncaught traceback ------------------

PROGRAM = r"""
import json, logging, os, sys
import boto3

records = []
if os.environ.get("CAPTURE"):
    class Capture(logging.Handler):
        def emit(self, record):
            records.append({"level": record.levelname, "text": self.format(record)})
    handler = Capture(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("brs_autopatch").addHandler(handler)

import brs_autopatch
client = boto3.client("sts")
try:
    client.get_caller_identity()
except brs_autopatch.CredentialRefreshError as error:
    print(json.dumps({"error": str(error), "records": records}), flush=True)
    raise  # uncaught: Python prints the traceback, chained causes included
print(json.dumps({"error": None, "records": records}))
"""


@pytest.mark.parametrize("level", ["default", "DEBUG"])
@pytest.mark.parametrize("mode", MANGLING)
def test_damaged_answer_leaks_no_secret(
    run_python: RunPython, sts: StsServer, mode: str, level: str
) -> None:
    sts.fault("AssumeRole", mode)
    env = {"BRS_ROLE_ARN": ROLE}
    if level == "DEBUG":
        env |= {"BRS_LOG_LEVEL": "DEBUG", "CAPTURE": "1"}
    result = run_python(PROGRAM, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, secrets_of(sts))

    answer = json.loads(result.stdout)
    error = answer["error"]
    assert error.startswith(f"could not refresh credentials for {ROLE}: ")
    assert "\n" not in error and where(sts) in error
    assert "brs_autopatch.errors.CredentialRefreshError: " + error in result.stderr
    assert "ResponseParserError:" not in result.stderr  # the body-quoting cause is not chained

    # Our warning: one line, naming the endpoint and region.
    ours = [line for line in result.stderr.splitlines() if "refresh of " + ROLE in line]
    assert len(ours) == 1, result.stderr
    assert where(sts) in ours[0] and ours[0].endswith(" s"), ours[0]
    if level == "DEBUG":
        warnings = [r for r in answer["records"] if r["level"] == "WARNING"]
        assert len(warnings) == 1 and answer["records"], answer
        assert all("\n" not in record["text"] for record in answer["records"])


def test_an_unreachable_sts_is_named_with_its_endpoint_and_region(aws_env: dict[str, str]) -> None:
    from brs_autopatch import build as factory
    from brs_autopatch.config.settings import Settings

    settings = Settings(role_arns=(ROLE,), sts_endpoint_url="http://127.0.0.1:9", sts_region="eu-west-1")
    with pytest.raises(CredentialRefreshError) as caught:
        factory.build(settings).get_frozen_credentials()
    assert str(caught.value) == (
        f"could not refresh credentials for {ROLE}: STS unreachable: EndpointConnectionError; "
        "endpoint http://127.0.0.1:9, region eu-west-1"
    )


FILTERED = r"""
import logging, sys
from brs_autopatch import RefreshableSession  # no patch, no BRS_LOG_LEVEL: logs.configure never ran
session = RefreshableSession({"RoleArn": sys.argv[1]})
frozen = session.refreshable_credentials.get_frozen_credentials()
logging.getLogger("brs_autopatch").warning("a careless line: %s %s", frozen.secret_key, frozen.token)
print(frozen.access_key)
"""


def test_issued_credentials_are_masked_in_any_record_without_log_settings(
    run_python: RunPython, sts: StsServer
) -> None:
    result = run_python(FILTERED, args=[ROLE], check=True)
    assert sts.count("sts:AssumeRole") == 1
    assert result.stderr == "a careless line: (redacted) (redacted)\n"
    assert result.stdout.strip().startswith("ASIA")


# -- brs-run --check ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MANGLING)
def test_check_with_a_damaged_answer_leaks_no_secret(launch: Launch, sts: StsServer, mode: str) -> None:
    sts.fault("AssumeRole", mode)
    result = launch([*MODULE, "--check"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, secrets_of(sts))
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"brs-run --check: FAILED: could not refresh credentials for {ROLE}")
    assert where(sts) in line


def test_check_at_debug_level_leaks_no_secret(launch: Launch, sts: StsServer) -> None:
    sts.fault("AssumeRole", "truncate")
    result = launch([*MODULE, "--check"], env={"BRS_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, secrets_of(sts))
    assert any("refresh of" in line and where(sts) in line for line in result.stderr.splitlines())


# -- the MFA command is a secret ---------------------------------------------------------


def test_mfa_command_is_never_echoed_by_config_errors() -> None:
    unbalanced = f"oathtool --totp -b '{FAKE_SEED}"
    with pytest.raises(ConfigError) as caught:
        from_env({"BRS_ROLE_ARN": ROLE, "BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me",
                  "BRS_MFA_TOKEN_COMMAND": unbalanced})
    assert str(caught.value).startswith("BRS_MFA_TOKEN_COMMAND=(value hidden) is not valid")
    assert FAKE_SEED not in str(caught.value)
    settings = from_env({"BRS_ROLE_ARN": ROLE, "BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me",
                         "BRS_MFA_TOKEN_COMMAND": f"oathtool --totp -b {FAKE_SEED}"})
    assert settings.redacted()["mfa_token_command"] == "(set, hidden)"
    assert FAKE_SEED not in repr(settings)


def test_launcher_rejects_a_bad_mfa_command_without_echoing_it(launch: Launch) -> None:
    result = launch([*MODULE, "python", "-c", "pass"], env={
        "BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me",
        "BRS_MFA_TOKEN_COMMAND": f"oathtool --totp -b '{FAKE_SEED}",
    })
    assert result.returncode == 2
    assert "BRS_MFA_TOKEN_COMMAND" in result.stderr
    assert FAKE_SEED not in result.stdout + result.stderr


def test_check_hides_the_mfa_command_even_when_it_prints_its_seed(launch: Launch, sts: StsServer) -> None:
    # A token command that fails and quotes its arguments on stderr (as a confused
    # `oathtool` would): the seed is a remembered secret, masked in every message.
    command = f"{sys.executable} -c 'import sys; sys.exit(\"bad seed \" + sys.argv[2])' -b {FAKE_SEED}"
    result = launch([*MODULE, "--check"], env={
        "BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me",
        "BRS_MFA_TOKEN_COMMAND": command,
        "BRS_LOG_LEVEL": "DEBUG",
    })
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert FAKE_SEED not in output
    assert re.search(r"mfa_token_command +\(set, hidden\)", result.stdout), result.stdout
    assert "bad seed (redacted)" in result.stdout
    assert sts.count("sts:AssumeRole") == 0


def test_check_with_a_working_mfa_command_hides_it(launch: Launch, sts: StsServer) -> None:
    command = f"{sys.executable} -c 'print(123456)' -b {FAKE_SEED}"
    result = launch([*MODULE, "--check"], env={
        "BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me",
        "BRS_MFA_TOKEN_COMMAND": command,
    })
    assert result.returncode == 0, result.stdout + result.stderr
    assert FAKE_SEED not in result.stdout + result.stderr
    assert sts.calls("sts:AssumeRole")[0]["params"]["TokenCode"] == "123456"


# -- describe_error: the cause, one line, never a body -------------------------------------

WHERE = "endpoint https://sts.eu-west-1.amazonaws.com, region eu-west-1"
BODY = (
    "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId>"
    "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey><SessionTok"
)


def client_error(code: str, status: int, message: str = "msg") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "AssumeRole")


@pytest.mark.parametrize(
    "error, cause, permanent",
    [
        (client_error("AccessDenied", 403), "access denied: AccessDenied: msg", True),
        (client_error("Throttling", 400), "throttled: Throttling: msg", False),
        (client_error("ServiceUnavailable", 503), "STS error (HTTP 503): ServiceUnavailable: msg", False),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            "STS unreachable: EndpointConnectionError",
            False,
        ),
        (NoCredentialsError(), "no source credentials to call STS with (set AWS_* or a profile)", True),
        (ResponseParserError(f"Unable to parse response, invalid XML received:\n{BODY}"),
         "STS answer unreadable: ResponseParserError", False),
        (KeyError("AssumeRoleResult"), "unexpected STS answer: KeyError: 'AssumeRoleResult'", False),
    ],
)
def test_describe_error(error: Exception, cause: str, permanent: bool) -> None:
    assert failures.describe_error(error) == (cause, permanent)


def test_sts_failures_name_the_endpoint_and_region_local_ones_do_not() -> None:
    remote = [client_error("AccessDenied", 403), EndpointConnectionError(endpoint_url="x"),
              ResponseParserError(BODY), KeyError("Credentials"), RuntimeError("plugin says no")]
    for error in remote:
        cause, _ = failures.describe_error(error, WHERE)
        assert cause.endswith("; " + WHERE), cause
    for error in [NoCredentialsError(), ConfigError("BRS_X=1 is not valid: expected y")]:
        assert WHERE not in failures.describe_error(error, WHERE)[0]


def test_sts_error_messages_are_one_line_capped_and_scrubbed() -> None:
    long = "first line\nsecond   line " + "x" * 500
    cause, _ = failures.describe_error(client_error("InternalFailure", 500, long))
    assert "\n" not in cause and len(cause) < 300 and cause.endswith("...")
    assert "first line second line" in cause
    quoting = client_error("InternalFailure", 500, "upstream said: " + BODY)
    cause, _ = failures.describe_error(quoting)
    assert "EXAMPLEKEY" not in cause and "SecretAccessKey" not in cause
    assert cause == "STS error (HTTP 500): InternalFailure: upstream said: (markup omitted)"
    plugin = RuntimeError("vault answered {\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCY\"}")
    assert "wJalr" not in failures.describe_error(plugin)[0]


def test_only_safe_errors_are_chained() -> None:
    assert failures.chainable(ResponseParserError(BODY)) is None
    assert failures.chainable(client_error("AccessDenied", 403)) is None
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert failures.chainable(unreachable) is unreachable


def test_where_names_url_and_region_without_userinfo_or_query() -> None:
    class Meta:
        endpoint_url = "https://user:pass@sts.eu-west-1.amazonaws.com:8443/path?X-Amz-Security-Token=t"
        region_name = "eu-west-1"

    class Client:
        meta = Meta()

    expected = "endpoint https://sts.eu-west-1.amazonaws.com:8443/path, region eu-west-1"
    assert failures.where_of(Client()) == expected

    def fetch() -> None: ...

    failures.mark(fetch, Client())
    assert failures.where(fetch) == failures.where_of(Client())
    assert failures.where(object()) is None


# -- exceptions we raise are scrubbed at birth ------------------------------------------


def test_our_exceptions_are_one_line_and_masked() -> None:
    secret = "S3cr3tValueThatWasIssued/ForThisTest+1"
    redact.remember(secret)
    error = CredentialRefreshError("arn:role", f"boom\n{secret}", transient=True)
    assert str(error) == "could not refresh credentials for arn:role: boom (redacted)"
    assert error.cause == "boom (redacted)"
    assert str(ConfigError(f"BRS_X={secret!r}\nis not valid")) == "BRS_X='(redacted)' is not valid"


# -- scrub(): invariants -------------------------------------------------------------------

secret_values = st.text(alphabet=BASE64, min_size=redact.MIN_LENGTH, max_size=120)
# Text that contains no credential name with a separator after it: scrub leaves it alone.
plain_text = st.text(alphabet=st.characters(blacklist_characters="<>=:&", blacklist_categories=["Cs"]))


@settings(max_examples=200, deadline=None)
@given(secret=secret_values, pieces=st.lists(st.text(), min_size=1, max_size=4),
       form=st.sampled_from(["raw", "url", "url-lower"]))
def test_a_remembered_secret_never_survives(secret: str, pieces: list[str], form: str) -> None:
    registry = redact.Registry()
    registry.remember(secret)
    encoded = quote(secret, safe="")
    shown = {
        "raw": secret,
        "url": encoded,
        "url-lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded),
    }[form]
    text = shown.join(pieces) if len(pieces) > 1 else pieces[0] + shown
    cleaned = registry.scrub(text)
    assert secret not in cleaned
    assert shown not in cleaned


@settings(max_examples=200, deadline=None)
@given(secrets=st.lists(secret_values, min_size=1, max_size=5),
       pieces=st.lists(st.text(max_size=20), min_size=6, max_size=6),
       order=st.permutations(range(5)))
def test_several_remembered_secrets_never_survive(
    secrets: list[str], pieces: list[str], order: list[int]
) -> None:
    registry = redact.Registry()
    registry.remember(*secrets)
    embedded = [secrets[i % len(secrets)] for i in order]
    text = pieces[0] + "".join(e + p for e, p in zip(embedded, pieces[1:], strict=True))
    cleaned = registry.scrub(text)
    for secret in secrets:
        assert secret not in cleaned


@settings(max_examples=200, deadline=None)
@given(text=plain_text, secrets=st.lists(secret_values, max_size=3))
def test_unrelated_text_is_unchanged(text: str, secrets: list[str]) -> None:
    assume(all(form not in text for s in secrets for form in redact._forms(s)))
    registry = redact.Registry()
    registry.remember(*secrets)
    assert registry.scrub(text) == text


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=BASE64, min_size=1, max_size=60), cut=st.integers(0, 60),
       name=st.sampled_from(["SecretAccessKey", "SessionToken"]), before=plain_text)
def test_a_credential_next_to_its_name_is_masked_even_if_never_remembered(
    value: str, cut: int, name: str, before: str
) -> None:
    # An answer cut anywhere inside the value: whatever is left of it is masked.
    masked = redact.REDACTED
    cases = {
        f"{before}<{name}>{value}</{name}>": f"{before}<{name}>{masked}</{name}>",
        f"{before}<{name}>{value[: cut or None]}": f"{before}<{name}>{masked}",
        f'{before}{{"{name}": "{value}"}}': f'{before}{{"{name}": "{masked}"}}',
        f"{before}?{name}={value}&x=1": f"{before}?{name}={masked}&x=1",
        f"{before}&lt;{name}&gt;{value}&lt;/": f"{before}&lt;{name}&gt;{masked}&lt;/",
    }
    registry = redact.Registry()  # nothing remembered: the pattern alone
    for text, expected in cases.items():
        assert registry.scrub(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("<Token>FQoGabc</Token>", "<Token>(redacted)</Token>"),
    ('{"Token": "FQoGabc", "Expiration": "2026"}', '{"Token": "(redacted)", "Expiration": "2026"}'),
    ("{'token': 'FQoGabc'}", "{'token': '(redacted)'}"),
    ("aws_session_token = FQoGabc", "aws_session_token = (redacted)"),
    # The bare word is no credential name: a token *file* that is missing stays readable.
    ("cannot read web identity token file /var/run/token: No such file", None),
    ("MFA token command ykman exited 1: no YubiKey", None),
])
def test_credential_names_and_plain_words(text: str, expected: str | None) -> None:
    assert redact.Registry().scrub(text) == (text if expected is None else expected)


def test_the_registry_is_bounded_and_pinned_values_stay() -> None:
    registry = redact.Registry(max_issued=4, max_pinned=2)
    registry.remember("external-id-configured", pinned=True)
    issued = [f"issued-secret-{n:04d}" for n in range(6)]
    for value in issued:
        registry.remember(value)
    assert len(registry) == 5
    text = " ".join(["external-id-configured", *issued])
    cleaned = registry.scrub(text).split()
    assert cleaned[0] == redact.REDACTED  # pinned: never pushed out by refreshes
    assert cleaned[1:3] == issued[:2]  # the oldest issued values are forgotten
    assert cleaned[3:] == [redact.REDACTED] * 4
    registry.remember("short")  # below MIN_LENGTH: masking it would garble messages
    assert registry.scrub("a short note") == "a short note"


# -- the logging filter ------------------------------------------------------------------


def test_every_record_of_our_logger_is_scrubbed_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("brs_autopatch")
    assert any(isinstance(f, redact.ScrubFilter) for f in logger.filters)  # installed at import
    secret = "AnotherIssuedSecretValue0123456789/abcd"
    redact.remember(secret)
    caplog.set_level(logging.DEBUG, logger="brs_autopatch")
    try:
        raise ValueError(f"answer was <SessionToken>FQoGneverRemembered{'x' * 30}\n{secret}")
    except ValueError:
        logger.warning("refresh failed: %s\nsecond line", secret, exc_info=True)
    (record,) = [r for r in caplog.records if r.name == "brs_autopatch"]
    assert record.getMessage() == "refresh failed: (redacted) second line"
    assert record.exc_info is None and record.exc_text is not None
    assert secret not in record.exc_text and "FQoGnever" not in record.exc_text
    assert "Traceback" in record.exc_text


def test_the_filter_costs_nothing_below_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("brs_autopatch")
    scrubbed: list[str] = []
    real_scrub = redact.scrub

    def counting_scrub(text: str) -> str:
        scrubbed.append(text)
        return real_scrub(text)

    monkeypatch.setattr(redact, "scrub", counting_scrub)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    monkeypatch.setattr(logger, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(logger, "propagate", False)
    for _ in range(100):
        logger.debug("suppressed %s", "x")
    assert scrubbed == []
    logger.warning("shown %s", "y")
    assert scrubbed == ["shown y"]


# -- configured secrets are remembered: external id, web identity token ------------------


def test_configured_secrets_are_masked_when_sts_quotes_them(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    from brs_autopatch import build as factory
    from brs_autopatch.config.settings import Settings

    external_id = "ext-id-7f3a9c1e5b"
    sts.fault("AssumeRole", "error", http_status=403, code="AccessDenied",
              message=f"ExternalId {external_id} does not match")
    credentials = factory.build(Settings(role_arns=(ROLE,), external_id=external_id))
    with pytest.raises(CredentialRefreshError) as caught:
        credentials.get_frozen_credentials()
    assert str(caught.value).endswith(
        "access denied: AccessDenied: ExternalId (redacted) does not match; " + where(sts))

    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    sts.fault("AssumeRoleWithWebIdentity", "error", http_status=400, code="InvalidIdentityToken",
              message=f"token {token} is expired")
    credentials = factory.build(
        Settings(role_arns=(ROLE,), method="web-identity", web_identity_token_file=str(token_file)))
    with pytest.raises(CredentialRefreshError) as caught:
        credentials.get_frozen_credentials()
    assert token not in str(caught.value)
    assert "InvalidIdentityToken: token (redacted) is expired; " + where(sts) in str(caught.value)


# -- the harness's fault modes do what their table says ---------------------------------


def raw_assume_role(sts: StsServer) -> tuple[int, dict[str, str], bytes, bool]:
    """One AssumeRole over a bare HTTP connection: (status, headers, body, complete)."""
    import http.client

    body = "Action=AssumeRole&Version=2011-06-15&RoleArn=" + quote(ROLE, safe="") + "&RoleSessionName=raw"
    connection = http.client.HTTPConnection(sts.host, sts.port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDRAW0000000000000/20260101/us-east-1/"
                             "sts/aws4_request, SignedHeaders=host, Signature=0",
        })
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            return response.status, headers, response.read(), True
        except http.client.IncompleteRead as short:
            return response.status, headers, short.partial, False
    finally:
        connection.close()


@pytest.mark.parametrize("mode", MANGLING)
def test_mangling_modes_damage_the_real_answer(sts: StsServer, mode: str) -> None:
    from xml.etree import ElementTree

    sts.fault("AssumeRole", mode, count=1)
    status, headers, body, complete = raw_assume_role(sts)
    (issued,) = sts.issued()
    assert issued["AccessKeyId"].startswith("ASIA")
    text = body.decode()
    secret, token = issued["SecretAccessKey"], issued["SessionToken"]
    assert status == 200 and complete == (mode != "short_body")
    if mode == "truncate":
        assert int(headers["content-length"]) == len(body)
        assert text.endswith(secret[: len(secret) // 2]) and secret not in text
    elif mode == "short_body":
        assert int(headers["content-length"]) > len(body)
        assert secret in text and text.endswith(token[: len(token) // 2])
    elif mode == "garble":
        assert secret in text and token in text and "</Credentials>" not in text
        with pytest.raises(ElementTree.ParseError):
            ElementTree.fromstring(body)
    elif mode == "html":
        assert headers["content-type"].startswith("text/html") and text.startswith("<!DOCTYPE html>")
        assert f"<SecretAccessKey>{secret}</SecretAccessKey>" in text
    elif mode == "unparseable":
        assert headers["content-type"] == "application/json"
        assert json.loads(text)["Credentials"] == issued
    else:
        root = ElementTree.fromstring(body)
        assert root.tag.endswith("ErrorResponse") and secret in text
    assert raw_assume_role(sts)[0] == 200 and len(sts.issued()) == 1  # count=1: the next is normal


def test_html_mode_takes_a_status(sts: StsServer) -> None:
    sts.fault("AssumeRole", "html", http_status=502, count=1)
    status, headers, _, _ = raw_assume_role(sts)
    assert status == 502 and headers["content-type"].startswith("text/html")
    from stsclient import StsServerError

    with pytest.raises(StsServerError, match=r"http_status must be an integer in \[400, 599\]"):
        sts.fault("AssumeRole", "error", code="X", http_status=200)
