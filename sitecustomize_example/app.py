"""An unmodified boto3 program: it knows nothing about brs_autopatch.

Calls STS GetCallerIdentity DEMO_CALLS times (default 5), DEMO_INTERVAL seconds
apart (default 1), printing who it is and the last four characters of the access
key it signs with, so refreshes are visible. Run it as ``brs-run python app.py``.
"""

import os
import sys
import time

import boto3


def main() -> int:
    calls = int(os.environ.get("DEMO_CALLS", "5"))
    interval = float(os.environ.get("DEMO_INTERVAL", "1"))
    session = boto3.Session()
    sts = session.client("sts")
    for number in range(1, calls + 1):
        arn = sts.get_caller_identity()["Arn"]
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials else None
        key = (frozen.access_key if frozen else None) or "????"
        print(f"{number}/{calls} {arn} key ...{key[-4:]}", flush=True)
        if number < calls:
            time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
