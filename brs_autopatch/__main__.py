"""``python -m brs_autopatch [options] [--] command [args...]``: the same as ``brs-run``."""

from brs_autopatch.launch.main import main

if __name__ == "__main__":
    raise SystemExit(main())
