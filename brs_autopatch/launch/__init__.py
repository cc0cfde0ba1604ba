"""The ``brs-run`` process: command line, the program it starts, ``--check``,
``--credential-process``, ``--install-pth``, uWSGI.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
