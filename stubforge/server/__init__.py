"""Server side: install stubs and backends where Triton looks, check a repository, verify it in a real server."""
