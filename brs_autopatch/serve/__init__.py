"""The loopback container-credentials endpoint: brs-run's side (start), the server, its process
plumbing (watch), the in-process endpoint, and the program's copies of the AWS files.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
