"""Adopting our own keys: a frozen copy passed back as explicit keys keeps refreshing."""

from __future__ import annotations

import json

import pytest
from conftest import RunPython
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer

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
    code = """
import brs_autopatch, boto3
boto3.client("sts").get_caller_identity()  # our credentials exist and issued a key
c = boto3.client("sts", aws_access_key_id="AKIDFOREIGN000000000", aws_secret_access_key="x")
print(c.get_caller_identity()["Arn"])
"""
    result = run_python(code, env=ENV, check=True)
    assert result.stdout.strip() == "arn:aws:sts::123456789012:user/moto"
    assert _signing_keys(sts)[-1] == "AKIDFOREIGN000000000"
