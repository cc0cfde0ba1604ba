"""What happens to every botocore session: install/unpatch, the installation, the providers in
front of botocore's chain, async sessions, adopting our own keys.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
