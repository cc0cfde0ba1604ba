"""Async stacks under the patch: aiobotocore (2.25.x, 3.x), aioboto3, s3fs, pandas on s3://.

Real libraries against the local moto server (STS and S3), each case in a fresh
interpreter. The async libraries pin botocore tightly, so they are installed in the
matrix venvs of ``scripts/test-matrix``, not in the main one: here the tests that
need them skip unless the library is importable — and fail instead when
``BRS_REQUIRE_ASYNC`` names it (the matrix sets it, so a broken install is not a skip).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, RunPython, StsServer, make_role_arn

from brs_autopatch.launch import check

ROLE = make_role_arn("async-role")
SESSION = "async"
ASSUMED = f"arn:aws:sts::123456789012:assumed-role/async-role/{SESSION}"
ENV = {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": SESSION}
REQUIRED = {name for name in os.environ.get("BRS_REQUIRE_ASYNC", "").split(",") if name}


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing and REQUIRED & set(missing):
        raise RuntimeError(f"BRS_REQUIRE_ASYNC names {sorted(REQUIRED & set(missing))}: not installed")
    return pytest.mark.skipif(bool(missing), reason=f"not installed here: {', '.join(missing)}")


needs_aio = needs("aiobotocore")


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def run(run_python: RunPython, code: str, env: dict[str, str] | None = None, how: str = "import") -> Any:
    """Run ``code`` after ``import brs_autopatch`` or under the launcher; its last line is JSON."""
    body = textwrap.dedent(code)
    full_env = {**ENV, **(env or {})}
    if how == "import":
        result = run_python("import brs_autopatch\n" + body, env=full_env, timeout=90)
    else:
        # brs-run python -c CODE (python -m brs_autopatch is the same entry point)
        launcher = (
            "import os, sys\n"
            "python = sys.executable\n"
            "os.execv(python, [python, '-m', 'brs_autopatch', python, '-c', sys.argv[1]])\n"
        )
        result = run_python(launcher, args=[body], env=full_env, timeout=90)
    assert result.returncode == 0, f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    return last_json(result.stdout)


def role_keys(sts: StsServer, action: str) -> list[str | None]:
    keys = [call["access_key_id"] for call in sts.calls(action)]
    assert FAKE_SOURCE_ACCESS_KEY_ID not in keys, "a request was signed with the source credentials"
    return keys


SHARED = """
from brs_autopatch.patch import install as patch, providers
shared = providers.shared_credentials(patch.current())
"""


# -- the tested range brs-run --check reports ----------------------------------------------------


@given(st.integers(0, 3000), st.integers(0, 200), st.integers(0, 200))
def test_check_says_tested_only_inside_the_tested_range(major: int, minor: int, patch: int) -> None:
    for name, (low, high) in check.TESTED.items():
        verdict = check.tested(name, f"{major}.{minor}.{patch}")
        assert (verdict == "tested") == (low <= (major, minor) <= high), (name, verdict)
        assert verdict == "tested" or "tested" not in verdict


def test_tested_range_examples() -> None:
    assert check.tested("botocore", "1.34.0") == check.tested("botocore", "1.44.8") == "tested"
    assert check.tested("botocore", "1.45.0") == "outside CI's range 1.34-1.44"
    assert check.tested("aiobotocore", "2.25.1") == check.tested("aiobotocore", "3.10.0") == "tested"
    assert check.tested("aiobotocore", "2.24.0") == "outside CI's range 2.25-3.10"


# -- which sessions are understood (pure logic) ---------------------------------------------------


def test_session_kinds() -> None:
    import botocore.session

    from brs_autopatch.patch.aio import session_kind

    class SyncSub(botocore.session.Session):
        def get_credentials(self) -> Any:
            return super().get_credentials()

    class AsyncSub(botocore.session.Session):
        async def get_credentials(self) -> Any:  # type: ignore[override]
            return None

    AioLike = type("AioSession", (AsyncSub,), {"__module__": "aiobotocore.session"})
    AioBroken = type("AioSession", (botocore.session.Session,), {"__module__": "aiobotocore.session"})
    assert session_kind(botocore.session.Session) == "sync"
    assert session_kind(SyncSub) == "sync"
    assert session_kind(AsyncSub) == "unknown"
    assert session_kind(AioLike) == "async"
    assert session_kind(AioBroken) == "unknown"  # aiobotocore with a protocol we do not know


def test_unknown_session_subclass_one_warning_and_the_program_runs(
    sts: StsServer, run_python: RunPython
) -> None:
    code = """
        import asyncio, json, botocore.session
        class HomeMadeAsyncSession(botocore.session.Session):
            async def get_credentials(self):
                return super().get_credentials()
        sessions = [HomeMadeAsyncSession() for _ in range(3)]
        resolver = sessions[0].get_component("credential_provider")
        creds = asyncio.run(sessions[0].get_credentials())
        plain = botocore.session.get_session().create_client("sts").get_caller_identity()["Arn"]
        print(json.dumps({"resolver": type(resolver).__module__, "method": creds.method, "plain": plain}))
    """
    env = {**ENV, "BRS_LOG_LEVEL": "WARNING"}
    result = run_python("import brs_autopatch\n" + textwrap.dedent(code), env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    found = last_json(result.stdout)
    assert found == {"resolver": "botocore.credentials", "method": "env", "plain": ASSUMED}
    warnings = [line for line in result.stderr.splitlines() if "HomeMadeAsyncSession" in line]
    assert len(warnings) == 1, result.stderr
    assert "WARNING" in warnings[0] and "__main__.HomeMadeAsyncSession" in warnings[0]


# -- signing as the role --------------------------------------------------------------------------

AIOBOTOCORE_CALLS = """
import asyncio, json, aiobotocore.session
async def main():
    session = aiobotocore.session.get_session()
    async with session.create_client("sts") as sts:
        arn = (await sts.get_caller_identity())["Arn"]
    async with session.create_client("s3") as s3:
        await s3.create_bucket(Bucket="aio-bucket")
        await s3.put_object(Bucket="aio-bucket", Key="k", Body=b"payload")
        body = await (await s3.get_object(Bucket="aio-bucket", Key="k"))["Body"].read()
    explicit = aiobotocore.session.get_session()
    explicit.set_credentials("AKIDEXPLICIT00000000", "x")
    async with explicit.create_client("sts") as sts:
        explicit_arn = (await sts.get_caller_identity())["Arn"]
    async with session.create_client(
        "sts", aws_access_key_id="AKIDCLIENTKEYS000000", aws_secret_access_key="x"
    ) as sts:
        client_arn = (await sts.get_caller_identity())["Arn"]
    return {"arn": arn, "body": body.decode(), "explicit": explicit_arn, "client_keys": client_arn}
print(json.dumps(asyncio.run(main())))
"""


@needs_aio
@pytest.mark.parametrize("how", ["import", "launcher"])
def test_aiobotocore_signs_as_the_role(sts: StsServer, run_python: RunPython, how: str) -> None:
    found = run(run_python, AIOBOTOCORE_CALLS, how=how)
    assert found["arn"] == ASSUMED
    assert found["body"] == "payload"
    # Explicit keys on the session or the client win (moto answers with its default user).
    assert found["explicit"] == found["client_keys"] == "arn:aws:sts::123456789012:user/moto"
    assert sts.count("sts:AssumeRole") == 1
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    put = sts.calls("s3:PUT")
    role_key = put[-1]["access_key_id"]
    assert role_key not in (FAKE_SOURCE_ACCESS_KEY_ID, None)
    assert {call["access_key_id"] for call in put} == {role_key}


@needs_aio
def test_profile_on_an_async_session_wins(sts: StsServer, run_python: RunPython, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[other]\naws_access_key_id = AKIDPROFILE000000000\naws_secret_access_key = p\n")
    code = """
        import asyncio, json, aiobotocore.session
        async def main():
            session = aiobotocore.session.AioSession(profile="other")
            async with session.create_client("sts") as sts:
                return (await sts.get_caller_identity())["Arn"]
        print(json.dumps(asyncio.run(main())))
    """
    arn = run(run_python, code, env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    assert arn == "arn:aws:sts::123456789012:user/moto"
    assert sts.count("sts:AssumeRole") == 0
    assert [c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")] == ["AKIDPROFILE000000000"]


@needs("aioboto3")
@pytest.mark.parametrize("how", ["import", "launcher"])
def test_aioboto3_signs_as_the_role(sts: StsServer, run_python: RunPython, how: str) -> None:
    code = """
        import asyncio, json, aioboto3
        async def main():
            session = aioboto3.Session()
            async with session.client("sts") as sts:
                arn = (await sts.get_caller_identity())["Arn"]
            async with session.resource("s3") as s3:
                bucket = await s3.create_bucket(Bucket="aioboto3-bucket")
                await bucket.put_object(Key="k", Body=b"x")
            other = aioboto3.Session(profile_name="other")
            async with other.client("sts") as sts:
                other_arn = (await sts.get_caller_identity())["Arn"]
            return {"arn": arn, "other": other_arn}
        print(json.dumps(asyncio.run(main())))
    """
    import tempfile

    credentials = Path(tempfile.mkdtemp()) / "credentials"
    credentials.write_text("[other]\naws_access_key_id = AKIDPROFILE000000000\naws_secret_access_key = p\n")
    found = run(run_python, code, env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)}, how=how)
    assert found["arn"] == ASSUMED
    assert found["other"] == "arn:aws:sts::123456789012:user/moto"  # profile_name wins
    assert sts.count("sts:AssumeRole") == 1
    assert len(set(role_keys(sts, "s3:PUT"))) == 1


S3FS_AND_PANDAS = """
import json, sys, boto3, s3fs
boto3.client("s3").create_bucket(Bucket="fs-bucket")
fs = s3fs.S3FileSystem()
fs.pipe("fs-bucket/a.csv", b"x,y\\n1,2\\n")
out = {"ls": fs.ls("fs-bucket"), "cat": fs.cat("fs-bucket/a.csv").decode(),
       "boto3": boto3.client("sts").get_caller_identity()["Arn"]}
if "--pandas" in sys.argv:
    import pandas as pd
    frame = pd.read_csv("s3://fs-bucket/a.csv")
    frame.assign(z=frame.x + frame.y).to_csv("s3://fs-bucket/b.csv", index=False)
    out["pandas"] = fs.cat("fs-bucket/b.csv").decode()
anon = s3fs.S3FileSystem(anon=True)
try:
    anon.ls("fs-bucket", refresh=True)
except Exception as error:
    pass
print(json.dumps(out))
"""


@needs("s3fs")
@pytest.mark.parametrize("how", ["import", "launcher"])
def test_s3fs_and_pandas_sign_as_the_role_one_assume_role(
    sts: StsServer, run_python: RunPython, how: str
) -> None:
    with_pandas = importlib.util.find_spec("pandas") is not None
    body = S3FS_AND_PANDAS.replace('"--pandas" in sys.argv', str(with_pandas))
    found = run(run_python, body, how=how)
    assert found["ls"] == ["fs-bucket/a.csv"]
    assert found["cat"] == "x,y\n1,2\n"
    assert found["boto3"] == ASSUMED
    if with_pandas:
        assert found["pandas"] == "x,y,z\n1,2,3\n"
    # boto3 + aiobotocore (through s3fs) + pandas in one process: one AssumeRole.
    assert sts.count("sts:AssumeRole") == 1
    # (an unsigned request names no service: the harness files it as "unknown")
    keys = [call["access_key_id"] for call in sts.calls() if call["service"] in ("s3", "unknown")]
    signed = [key for key in keys if key is not None]
    assert FAKE_SOURCE_ACCESS_KEY_ID not in keys
    assert len(set(signed)) == 1  # every signed S3 request: the role's one key
    assert None in keys  # anon=True: an unsigned request, no credentials asked for


# -- refresh --------------------------------------------------------------------------------------


@needs_aio
def test_twelve_second_credentials_keep_working_on_fresh_keys(sts: StsServer, run_python: RunPython) -> None:
    sts.set_duration_override(12)
    with_s3fs = importlib.util.find_spec("s3fs") is not None
    code = (
        SHARED
        + """
import asyncio, importlib.util, json, time, boto3, aiobotocore.session
found = lambda name: importlib.util.find_spec(name) is not None
WITH_S3FS, WITH_PANDAS, WITH_AIOBOTO3 = found("s3fs"), found("pandas"), found("aioboto3")
boto3.client("s3").create_bucket(Bucket="refresh-bucket")
if WITH_S3FS:
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.pipe("refresh-bucket/a.csv", b"x\\n1\\n")
if WITH_PANDAS:
    import pandas
if WITH_AIOBOTO3:
    import aioboto3
    aio3_session = aioboto3.Session()
async def main():
    session = aiobotocore.session.get_session()
    errors, deadline = 0, time.monotonic() + 30
    async with session.create_client("sts") as sts:
        while shared.stats.fetches < 3 and time.monotonic() < deadline:  # two refreshes
            try:
                await sts.get_caller_identity()
                if WITH_S3FS:
                    fs.pipe("refresh-bucket/k", b"x")
                if WITH_PANDAS:
                    assert pandas.read_csv("s3://refresh-bucket/a.csv").x.sum() == 1
                if WITH_AIOBOTO3:
                    async with aio3_session.client("s3") as s3:
                        await s3.put_object(Bucket="refresh-bucket", Key="aioboto3", Body=b"x")
            except Exception:
                errors += 1
            await asyncio.sleep(0.2)
        await sts.get_caller_identity()  # on the third key
    return {"errors": errors, "fetches": shared.stats.fetches}
print(json.dumps(asyncio.run(main())))
"""
    )
    found = run(run_python, code)
    assert found["errors"] == 0
    assert found["fetches"] == 3
    used = [call["access_key_id"] for call in sts.calls("sts:GetCallerIdentity")]
    assert FAKE_SOURCE_ACCESS_KEY_ID not in used
    assert len(set(used)) == 3  # signed with fresh keys after each refresh
    assert sts.count("sts:AssumeRole") == len(set(used))  # one AssumeRole per key, no more
    if with_s3fs or importlib.util.find_spec("aioboto3") is not None:
        # s3fs and aioboto3 signed with the refreshed keys too (the same shared credentials)
        assert len({c["access_key_id"] for c in sts.calls("s3:PUT")}) >= 2


CONCURRENT = (
    SHARED
    + """
import asyncio, json, time, aiobotocore.session
async def burst(client, n):
    results = await asyncio.gather(*(client.get_caller_identity() for _ in range(n)), return_exceptions=True)
    return sum(isinstance(r, BaseException) for r in results)
async def main():
    session = aiobotocore.session.get_session()
    async with session.create_client("sts") as sts:
        cold = await burst(sts, 200)  # never fetched: every coroutine needs the first fetch
        _, mandatory = shared.windows
        deadline = time.monotonic() + 20
        while not shared.refresh_needed(mandatory) and time.monotonic() < deadline:
            time.sleep(0.05)  # no request in the advisory window: reach the mandatory one
        due = shared.refresh_needed(mandatory)
        again = await burst(sts, 200)
    return {"cold_errors": cold, "due": due, "due_errors": again}
print(json.dumps(asyncio.run(main())))
"""
)


@needs_aio
def test_two_hundred_coroutines_when_a_refresh_is_due_one_assume_role(
    sts: StsServer, run_python: RunPython
) -> None:
    sts.set_duration_override(6)  # advisory window 4 s, mandatory 2 s
    sts.fault("AssumeRole", "delay", delay_seconds=0.5)  # so the coroutines really overlap
    found = run(run_python, CONCURRENT)
    assert found == {"cold_errors": 0, "due": True, "due_errors": 0}
    assert sts.count("sts:AssumeRole") == 2
    assert sts.count("sts:GetCallerIdentity") == 400


@needs_aio
def test_two_thousand_calls_with_900_second_credentials_one_assume_role(
    sts: StsServer, run_python: RunPython
) -> None:
    code = """
        import asyncio, json, aiobotocore.session
        async def main():
            session = aiobotocore.session.get_session()
            async with session.create_client("sts") as sts:
                for _ in range(40):
                    await asyncio.gather(*(sts.get_caller_identity() for _ in range(50)))
            return "ok"
        print(json.dumps(asyncio.run(main())))
    """
    assert run(run_python, code, env={"BRS_DURATION_SECONDS": "900"}) == "ok"
    assert sts.count("sts:GetCallerIdentity") == 2000
    assert sts.count("sts:AssumeRole") == 1
    assert sts.calls("sts:AssumeRole")[0]["params"].get("DurationSeconds") == "900"


LAG = (
    SHARED
    + """
import asyncio, json, time, aiobotocore.session
async def ticker(stop, lags):
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - before - 0.001)
async def main():
    lags, calls, stop = [], [], asyncio.Event()
    session = aiobotocore.session.get_session()
    async with session.create_client("sts") as sts:
        await sts.get_caller_identity()  # the first fetch (slowed too)
        # From here on: client creation (aiobotocore loading its models) is not ours.
        tick = asyncio.create_task(ticker(stop, lags))
        first = shared.stats.fetches
        deadline = time.monotonic() + 20
        while shared.stats.fetches < first + 1 and time.monotonic() < deadline:
            started = time.perf_counter()
            await sts.get_caller_identity()
            calls.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        for _ in range(5):
            started = time.perf_counter()
            await sts.get_caller_identity()
            calls.append(time.perf_counter() - started)
    stop.set()
    await tick
    return {"lag_ms": max(lags) * 1000, "worst_call_ms": max(calls) * 1000,
            "refreshed": shared.stats.fetches > first, "background": shared.stats.background_fetches}
print(json.dumps(asyncio.run(main())))
"""
)


@needs_aio
@pytest.mark.parametrize("defer", ["true", "false"])
def test_slow_sts_never_stalls_the_event_loop(sts: StsServer, run_python: RunPython, defer: str) -> None:
    sts.set_duration_override(8)  # refresh due after 2 s
    sts.fault("AssumeRole", "delay", delay_seconds=2.0)
    found = run(run_python, LAG, env={"BRS_DEFER_REFRESH": defer})
    print(found)  # the measured numbers, for -s / the report
    assert found["refreshed"] is True
    # Loose bounds (2 shared cores, xdist): a blocked loop would show ~2000 ms.
    assert found["lag_ms"] < 250
    if defer == "false":
        assert found["background"] >= 1
        assert found["worst_call_ms"] < 250  # nobody waits for STS
    else:
        # The advisory window serves the current credentials while one thread refreshes.
        assert found["worst_call_ms"] < 1000


@needs_aio
def test_refresh_failure_raises_credential_refresh_error_for_every_coroutine(
    sts: StsServer, run_python: RunPython
) -> None:
    sts.fault("AssumeRole", "access_denied", delay_seconds=0.3)
    code = """
        import asyncio, json, aiobotocore.session
        from brs_autopatch.errors import CredentialRefreshError
        async def main():
            session = aiobotocore.session.get_session()
            async with session.create_client("sts") as sts:
                results = await asyncio.gather(
                    *(sts.get_caller_identity() for _ in range(20)), return_exceptions=True
                )
            return sorted({type(r).__name__ for r in results}), len({id(r) for r in results})
        print(json.dumps(asyncio.run(main())))
    """
    names, distinct = run(run_python, code)
    assert names == ["CredentialRefreshError"]
    assert distinct == 20  # each coroutine its own exception object
    assert sts.count("sts:AssumeRole") == 1  # then the backoff: no STS call per coroutine
    assert sts.count("sts:GetCallerIdentity") == 0


# -- loops in threads, unpatch, fork --------------------------------------------------------------


@needs_aio
def test_loops_in_threads_unpatch_and_fork(sts: StsServer, run_python: RunPython) -> None:
    code = """
        import asyncio, json, os, threading, aiobotocore.session, brs_autopatch
        async def who():
            async with aiobotocore.session.get_session().create_client("sts") as sts:
                return (await sts.get_caller_identity())["Arn"]
        arns = []
        threads = [threading.Thread(target=lambda: arns.append(asyncio.run(who()))) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join(30)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, asyncio.run(who()).encode()); os._exit(0)
        os.waitpid(pid, 0)
        child = os.read(r, 1000).decode()
        brs_autopatch.unpatch()
        after = asyncio.run(who())
        print(json.dumps({"threads": arns, "child": child, "after": after}))
    """
    found = run(run_python, code)
    assert found["threads"] == [ASSUMED] * 4
    assert found["child"] == ASSUMED
    assert found["after"] == "arn:aws:sts::123456789012:user/moto"  # botocore's chain again
    assert sts.count("sts:AssumeRole") == 1  # four loops in threads and the child share it


@needs("aiobotocore", "anyio", "httpx")
def test_anyio_httpx_sessions_refresh_in_anyio_worker_threads(sts: StsServer, run_python: RunPython) -> None:
    code = """
        import json, anyio, anyio.to_thread, aiobotocore.session
        from aiobotocore.config import AioConfig
        from aiobotocore.httpxsession import HttpxSession
        hops = []
        run_sync = anyio.to_thread.run_sync
        async def counting(*args, **kwargs):
            hops.append([getattr(arg, "__name__", "") for arg in args])
            return await run_sync(*args, **kwargs)
        anyio.to_thread.run_sync = counting
        async def main():
            session = aiobotocore.session.get_session()
            session.set_default_client_config(AioConfig(http_session_cls=HttpxSession))
            async with session.create_client("sts") as sts:
                results = []
                async def one():
                    results.append((await sts.get_caller_identity())["Arn"])
                async with anyio.create_task_group() as group:
                    for _ in range(20):
                        group.start_soon(one)
                return sorted(set(results))
        arns = anyio.run(main)
        ours = [names for names in hops if "get_frozen_credentials" in names]
        print(json.dumps({"arns": arns, "hops": len(ours)}))
    """
    found = run(run_python, code)
    assert found["arns"] == [ASSUMED]
    # The first fetch ran in one anyio worker thread, shared by the 20 tasks.
    assert found["hops"] == 1
    assert sts.count("sts:AssumeRole") == 1


def test_async_session_support_imports_no_aiobotocore(sts: StsServer, run_python: RunPython) -> None:
    run_python(
        "import brs_autopatch, boto3, sys\n"
        "boto3.client('sts').get_caller_identity()\n"
        "assert not [m for m in sys.modules if m.startswith(('aiobotocore', 'anyio', 'asyncio'))]\n",
        env=ENV,
        check=True,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


COPIED_KEYS = """
import json, sys, time, boto3, s3fs
frozen = boto3.Session().get_credentials().get_frozen_credentials()
boto3.client("s3").create_bucket(Bucket="copied-bucket")
# What libraries do with key=/secret=/token=: a frozen copy, passed as explicit keys.
fs = s3fs.S3FileSystem(key=frozen.access_key, secret=frozen.secret_key, token=frozen.token)
deadline, rounds = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < deadline and rounds < 200:
    fs.pipe(f"copied-bucket/{rounds}", b"x")
    fs.invalidate_cache()
    rounds += 1
    time.sleep(0.25)
print(json.dumps({"copied": frozen.access_key, "rounds": rounds}))
"""


@needs("s3fs")
@pytest.mark.parametrize("adopt", ["true", "false"])
def test_s3fs_given_a_frozen_copy_keeps_refreshing(sts: StsServer, run_python: RunPython, adopt: str) -> None:
    sts.set_duration_override(12)
    seconds = "30" if adopt == "true" else "3"
    result = run_python(
        "import brs_autopatch\n" + COPIED_KEYS,
        args=[seconds],
        env={**ENV, "BRS_ADOPT_OWN_KEYS": adopt},
        timeout=120,
        check=True,
    )
    found = last_json(result.stdout)
    keys = [
        call["access_key_id"] for call in sts.calls() if call["service"] == "s3" and call["method"] == "PUT"
    ]
    assert keys and keys[0] == found["copied"] and FAKE_SOURCE_ACCESS_KEY_ID not in keys
    if adopt == "true":
        # 30 s of 12-second credentials: the s3fs client moved on to each new key.
        assert len(set(keys)) >= 3
    else:
        assert set(keys) == {found["copied"]}


# Our (public) access key id with a made-up secret, then a real copy, in aiobotocore
# clients: the first signs as nothing but itself, the second adopts the refreshing keys.
ASYNC_FORGERY = """
import asyncio, json, time
import brs_autopatch, boto3
from aiobotocore.session import get_session
credentials = boto3.Session().get_credentials()
first = credentials.get_frozen_credentials()
deadline = time.monotonic() + 60
while credentials.get_frozen_credentials().access_key == first.access_key:
    assert time.monotonic() < deadline, "no refresh within 60 s"
    time.sleep(0.2)

async def main():
    for secret in (first.secret_key + "x", first.secret_key):
        async with get_session().create_client(
            "sts", aws_access_key_id=first.access_key, aws_secret_access_key=secret,
            aws_session_token=first.token,
        ) as client:
            await client.get_caller_identity()

asyncio.run(main())
print(json.dumps({"copied": first.access_key, "token": first.token}))
"""


@needs_aio
def test_async_clients_adopt_only_a_real_copy(sts: StsServer, run_python: RunPython) -> None:
    sts.set_duration_override(12)
    result = run_python(ASYNC_FORGERY, env=ENV, timeout=90, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    forged, real = sts.calls("sts:GetCallerIdentity")[-2:]
    assert (forged["access_key_id"], forged["session_token"]) == (report["copied"], report["token"])
    assert real["access_key_id"] != report["copied"] and real["session_token"] != report["token"]
