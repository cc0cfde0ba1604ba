"""What the user asked for, parsed and checked: the ``BRS_*`` table, Settings, arguments,
profiles, the served role, botocore-dependent checks, and the fingerprint brs-run leaves its children.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
