"""Small shared rules under everything else: import hooks, patterns, redaction, the logger.

Docstring only: every Python child under brs-run pays for each module on its start-up path.
"""
