"""botocore's own DEBUG output: our secrets are masked there too (best effort)."""

from __future__ import annotations

from stsclient import RunPython, StsServer

PROGRAM = """
import io, logging, sys
import brs_autopatch, boto3
stream = io.StringIO()
root = logging.getLogger("botocore")
root.addHandler(logging.StreamHandler(stream))
root.setLevel(logging.DEBUG)
boto3.client("sts").get_caller_identity()
frozen = boto3.Session().get_credentials().get_frozen_credentials()
text = stream.getvalue()
assert "SecretAccessKey" in text and "X-Amz-Security-Token" in text, "botocore logged less than expected"
print(frozen.secret_key in text, frozen.token in text, len(text) > 1000)
"""


def test_issued_secrets_masked_in_botocore_debug_log(sts: StsServer, run_python: RunPython) -> None:
    env = {"BRS_ROLE_ARN": "arn:aws:iam::123456789012:role/debugged"}
    result = run_python(PROGRAM, env=env, check=True)
    assert result.stdout.split() == ["False", "False", "True"]
