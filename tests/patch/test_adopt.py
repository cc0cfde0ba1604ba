"""Adopting our own keys: a frozen copy passed back as explicit keys keeps refreshing."""

from __future__ import annotations

import json

import pytest
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, RunPython, StsServer

ROLE = "arn:aws:iam::123456789012:role/adopted"
ENV = {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": "adopt"}

# What dlt, django-storages or s3fs key=/secret=/token= do: copy the frozen credentials
# once into explicit keys, then use that client for the whole run.
COPIER = """
import json, sys, time
import brs_autopatch, boto3
frozen = boto3.Session().get_credentials().get_frozen_credentials()
client = boto3.client("sts", aws_access_key_id=frozen.access_key,
                      aws_secret_access_key=frozen.secret_key, aws_session_token=frozen.token)
arns, deadline = [], time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline and len(arns) < 400:
    arns.append(client.get_caller_identity()["Arn"])
    time.sleep(0.25)
print(json.dumps({"copied": frozen.access_key, "arns": sorted(set(arns))}))
"""


def _signing_keys(sts: StsServer) -> list[str]:
    return [str(call["access_key_id"]) for call in sts.calls("sts:GetCallerIdentity")]


@pytest.mark.parametrize("adopt", [True, False])
def test_frozen_copy_keeps_working_across_refreshes(
    sts: StsServer, run_python: RunPython, adopt: bool
) -> None:
    sts.set_duration_override(12)
    env = {**ENV, "BRS_ADOPT_OWN_KEYS": "true" if adopt else "false"}
    seconds = "40" if adopt else "3"  # the control only needs to show the copy sticks
    result = run_python(COPIER, args=[seconds], env=env, timeout=90, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    keys = _signing_keys(sts)
    assert keys[0] == report["copied"]
    assert all(arn.startswith("arn:aws:sts::123456789012:assumed-role/adopted/") for arn in report["arns"])
    if adopt:
        # 40 s of 12-second credentials: the client moved on to every new key as issued,
        # one distinct key per refresh, never the source key.
        assert len(set(keys)) == sts.count("sts:AssumeRole") >= 4
        assert FAKE_SOURCE_ACCESS_KEY_ID not in keys
    else:
        assert set(keys) == {report["copied"]}  # the frozen copy, until it expires


def test_foreign_keys_are_untouched(sts: StsServer, run_python: RunPython) -> None:
    # A foreign id with a foreign secret: whoever is explicit wins.
    code = """
import brs_autopatch, boto3
boto3.client("sts").get_caller_identity()  # our credentials exist and issued a key
c = boto3.client("sts", aws_access_key_id="AKIDFOREIGN000000000", aws_secret_access_key="x")
print(c.get_caller_identity()["Arn"])
"""
    result = run_python(code, env=ENV, check=True)
    assert result.stdout.strip() == "arn:aws:sts::123456789012:user/moto"
    assert _signing_keys(sts)[-1] == "AKIDFOREIGN000000000"


# After one refresh the refreshing credentials sign with a NEW key: a client that was
# adopted signs with it; a client left alone keeps its own id and token. Every variant
# below carries our (public) access key id; only the real copy holds all three values.
FORGERIES = """
import json, time
import brs_autopatch, boto3
credentials = boto3.Session().get_credentials()
first = credentials.get_frozen_credentials()
deadline = time.monotonic() + 60
while credentials.get_frozen_credentials().access_key == first.access_key:
    assert time.monotonic() < deadline, "no refresh within 60 s"
    time.sleep(0.2)
made_up = "x" * len(first.secret_key)
variants = {
    "made-up secret, our token": (first.secret_key[:-1] + "!", first.token),
    "made-up secret, no token": (made_up, None),
    "made-up secret, made-up token": (made_up, "forged-token"),
    "our secret, made-up token": (first.secret_key, "forged-token"),
    "our secret, no token": (first.secret_key, None),
    "real copy": (first.secret_key, first.token),
}
for label, (secret, token) in variants.items():
    client = boto3.client("sts", aws_access_key_id=first.access_key,
                          aws_secret_access_key=secret, aws_session_token=token)
    client.get_caller_identity()
    print(json.dumps({"label": label, "token": token}))
print(json.dumps({"copied": first.access_key, "token": first.token,
                  "current": credentials.get_frozen_credentials().access_key}))
"""


def test_our_access_key_id_with_any_other_secret_or_token_is_foreign(
    sts: StsServer, run_python: RunPython
) -> None:
    sts.set_duration_override(12)
    result = run_python(FORGERIES, env=ENV, timeout=90, check=True)
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    *variants, report = lines
    calls = sts.calls("sts:GetCallerIdentity")[-len(variants):]
    assert len(calls) == len(variants) == 6
    for variant, call in zip(variants, calls, strict=True):
        if variant["label"] == "real copy":
            # Adopted: signs with the refreshing credentials' current key and token.
            assert call["access_key_id"] != report["copied"], variant
            assert call["session_token"] not in (None, report["token"]), variant
        else:
            # Signs as nothing but itself: its own id and its own token (or none).
            assert call["access_key_id"] == report["copied"], variant
            assert call["session_token"] == variant["token"], variant
    assert "Traceback" not in result.stderr

