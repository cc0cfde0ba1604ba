"""The AWS_LAMBDA_EXEC_WRAPPER recipe, run from the docs' own text.

Lambda starts ``$AWS_LAMBDA_EXEC_WRAPPER <runtime command...>``; here the runtime is a
fake one (``python3 handler_runner.py``, which imports the handler and calls it once),
and the handler's STS answer and the STS server's records show who signed.
"""

from __future__ import annotations

import json
from pathlib import Path

from doc_blocks import fenced
from launching import ASSUMED, Launch, write
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, StsServer

HANDLER = """\
import boto3

def handler(event, context):
    return boto3.client("sts").get_caller_identity()["Arn"]
"""
RUNNER = """\
import json, sys
import handler
print(json.dumps({"result": handler.handler({}, None)}))
"""


def wrapper_recipe(doc: Path) -> str:
    """The ``sh`` block that follows the doc's first mention of AWS_LAMBDA_EXEC_WRAPPER."""
    return fenced(doc, "AWS_LAMBDA_EXEC_WRAPPER", "sh")


def test_both_docs_give_the_same_wrapper() -> None:
    main = wrapper_recipe(REPO_ROOT / "docs" / "recipes.md")
    example = wrapper_recipe(REPO_ROOT / "sitecustomize_example" / "README.md")
    assert main == example
    assert "BRS_BOOTSTRAP" not in main  # the value the bootstrap declines, silently


def test_the_readme_wrapper_makes_the_handler_sign_as_the_role(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    wrapper = tmp_path / "brs-wrapper"
    write(wrapper, wrapper_recipe(REPO_ROOT / "docs" / "recipes.md"), mode=0o755)
    task = tmp_path / "task"  # Lambda's /var/task: the handler and the runtime's cwd
    write(task / "handler.py", HANDLER)
    write(task / "handler_runner.py", RUNNER)

    result = launch([wrapper, "python3", "handler_runner.py"], cwd=task)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"result": ASSUMED}
    assert sts.count("sts:AssumeRole") == 1
    [identity] = sts.calls("sts:GetCallerIdentity")
    assert identity["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID  # signed by the role
    assert identity["session_token"]


def test_the_old_recipe_is_no_longer_silent(launch: Launch, sts: StsServer, tmp_path: Path) -> None:
    # What the README used to say: BRS_BOOTSTRAP=1 made the bootstrap decline, exit 0,
    # nothing said. It still declines (brs-run did not set the interpreter up), loudly.
    old = (
        "#!/bin/sh\n"
        "export PYTHONPATH=\"$(python3 -c 'import brs_autopatch.launch.main as l; print(l.BOOTSTRAP_DIR)')"
        '${PYTHONPATH:+:$PYTHONPATH}"\n'
        "export BRS_BOOTSTRAP=1\n"
        'exec "$@"\n'
    )
    wrapper = tmp_path / "old-wrapper"
    write(wrapper, old, mode=0o755)
    task = tmp_path / "task"
    write(task / "handler.py", HANDLER)
    write(task / "handler_runner.py", RUNNER)
    result = launch([wrapper, "python3", "handler_runner.py"], cwd=task)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] != ASSUMED
    assert sts.count("sts:AssumeRole") == 0
    assert "not patching: BRS_BOOTSTRAP='1' is written by brs-run only" in result.stderr
