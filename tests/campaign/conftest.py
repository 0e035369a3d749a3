"""The campaign tests' fixtures: a real Dask cluster (campaign_cluster.py)."""

from campaign_cluster import cluster  # noqa: F401 - the fixture
