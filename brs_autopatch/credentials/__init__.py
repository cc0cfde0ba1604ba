"""One refreshing credentials object and its parts: the engine (RoleCredentials), the
schedule, backoff and failures, lifecycle across threads/fork/exit, the cross-process cache,
sources, MFA, which keys we issued, the async view, presigned URLs.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
