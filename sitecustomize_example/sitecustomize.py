"""sitecustomize.py: brs_autopatch in every Python process of this interpreter.

For interpreters whose start-up you own (a venv, a Docker image), as an alternative
to ``brs-run``. Python imports ``sitecustomize`` once at start-up, from the first
directory on ``sys.path`` that has one; see README.md for where to put this file.

Cheap when unused: without BRS_ROLE_ARN (or BRS_METHOD) it imports nothing more.
It never imports boto3 or botocore: the patch waits until the program imports
them, so ``gevent.monkey.patch_all()`` and friends still come first.
"""

import os

# --- Your existing sitecustomize code goes here. --------------------------------------
# There is only one sitecustomize per interpreter: if one exists already, append the
# block below to it instead of replacing it. Code that sets BRS_* or AWS_* variables
# must run before the block below.


# --- brs_autopatch ---------------------------------------------------------------------
if (os.environ.get("BRS_ROLE_ARN") or os.environ.get("BRS_METHOD")) and os.environ.get(
    "BRS_ENABLED", ""
).strip().lower() not in ("0", "false", "no", "off"):
    try:
        import brs_autopatch  # noqa: F401  (installs the patch; botocore not imported)
    except ImportError as error:
        # Not installed in this interpreter: run unpatched, but say so (stderr only).
        if error.name != "brs_autopatch":
            raise
        import sys

        sys.stderr.write("sitecustomize: BRS_ROLE_ARN is set but brs_autopatch is not installed\n")
    # Bad BRS_* values raise brs_autopatch.ConfigError here: Python reports it as
    # "Error in sitecustomize" and the program starts unpatched. Set BRS_ON_ERROR=warn
    # to turn that into one warning; run `brs-run --check` to see what is wrong.
