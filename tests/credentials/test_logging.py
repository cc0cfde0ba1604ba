"""Secrets never reach the brs_autopatch logger, at any level; one INFO line per refresh."""

from __future__ import annotations

import logging

import pytest
from engine_helpers import SimClock, seconds_left, simulated
from stsclient import StsServer

from brs_autopatch.config.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/logged"


def test_refresh_logs_carry_no_secret(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="brs_autopatch")
    clock = SimClock()
    creds = simulated(Settings(role_arns=(ROLE,), duration_seconds=900, external_id="ext-secret-1"), clock)
    issued = []
    for index in range(3):
        if index:  # into this refresh's (jittered) advisory window
            clock.advance(seconds_left(creds, clock) - creds.windows[0] + 1)
        issued.append(creds.get_frozen_credentials())
    clock.advance(seconds_left(creds, clock) - creds.windows[0] + 1)
    sts.fault("AssumeRole", "access_denied")
    creds.get_frozen_credentials()  # a failed refresh in the advisory window: a WARNING
    ours = [r for r in caplog.records if r.name.startswith("brs_autopatch")]
    text = "\n".join(r.getMessage() for r in ours)
    infos = [r for r in ours if r.levelno == logging.INFO]
    assert len(infos) == 3 and all(ROLE in r.getMessage() for r in infos)
    assert any(r.levelno == logging.WARNING and "next attempt in" in r.getMessage() for r in ours)
    secrets = {aws_env["AWS_SECRET_ACCESS_KEY"], "ext-secret-1"}
    for frozen in issued:
        secrets |= {str(frozen.secret_key), str(frozen.token)}
    for secret in secrets:
        assert secret not in text
