"""stubforge push vs a naive upload of every file (one boto3 upload_file after another, like `aws s3 cp
--recursive`), against moto's S3 server on 127.0.0.1, measured back to back in one run; optionally the
`verify s3://` that follows.

    python benchmarks/push_vs_naive.py REPOSITORY [--rounds 3] [--verify-pytriton]

Each round pushes to a fresh prefix (first push), pushes again (unchanged), and uploads every file naively to
another fresh prefix (in a process of its own, as push runs: both pay an interpreter start and boto3's import).
Prints min/median/max per kind and the ratios of the medians. --verify-pytriton also times `stubforge verify
s3://...` once (needs nvidia-pytriton on PATH's python3, as `verify --pytriton` does).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3

KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stubforge(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "stubforge", *args, "-q"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


NAIVE = """
import os, sys, boto3
from pathlib import Path
repository, endpoint, prefix = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
client = boto3.client("s3", endpoint_url=endpoint)
for top, _, files in os.walk(repository):
    for name in files:
        path = Path(top) / name
        client.upload_file(str(path), "bench", f"{prefix}/{path.relative_to(repository).as_posix()}")
"""


def naive(endpoint: str, repository: Path, prefix: str) -> float:
    """The baseline as a process of its own too, so both sides pay an interpreter start and boto3's import."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", NAIVE, str(repository), endpoint, prefix], check=True)
    return time.monotonic() - started


def show(label: str, values: list[float]) -> None:
    print(
        f"{label:<22} min {min(values):6.2f} s  median {statistics.median(values):6.2f} s  max {max(values):6.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify-pytriton", action="store_true")
    args = parser.parse_args()
    os.environ.update(KEYS)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        first, unchanged, plain = [], [], []
        for i in range(args.rounds):
            url = f"s3://127.0.0.1:{port}/bench/push{i}"
            first.append(stubforge("push", str(args.repository), url))
            unchanged.append(stubforge("push", str(args.repository), url))
            plain.append(naive(endpoint, args.repository, f"naive{i}"))
        show("naive upload (all)", plain)
        show("push (first)", first)
        show("push (unchanged)", unchanged)
        base = statistics.median(plain)
        print(f"ratio first push / naive: {statistics.median(first) / base:.2f}")
        print(f"ratio unchanged push / naive: {statistics.median(unchanged) / base:.2f}")
        if args.verify_pytriton:
            seconds = stubforge("verify", f"s3://127.0.0.1:{port}/bench/push0", "--pytriton")
            total = statistics.median(first) + seconds
            print(f"verify s3:// {seconds:.2f} s; push (first, median) + verify {total:.2f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
