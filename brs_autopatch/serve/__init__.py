"""The loopback container-credentials endpoint: brs-run's side (start), the HTTP server
(server), what it answers with (role), the processes that keep it alive (supervisor) and
their plumbing (watch), the token directory (tokendir), the in-process endpoint
(inprocess), and the program's copies of the AWS files (awsfiles; read by awsread, their
source profiles found by awssource). The wire format both ends share:
brs_autopatch.methods.endpoint.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
