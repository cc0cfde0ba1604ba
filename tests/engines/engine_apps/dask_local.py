"""`brs-run python dask_local.py`: a LocalCluster of worker processes; prints each one's whoami()."""

from __future__ import annotations

import json

from brs_probe import whoami
from distributed import Client, LocalCluster

if __name__ == "__main__":
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        print(json.dumps(list(client.run(whoami).values())))
