"""A local AWS endpoint: moto in server mode on a free loopback port, for Secrets Manager.

Processes reach it through the standard variables (AWS_ENDPOINT_URL and dummy credentials in
`env`), exactly as a deployed gateway reaches the real service through the standard chain.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.net import free_port, wait_http

REGION = "us-east-1"


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        binary = Path(sys.executable).parent / "moto_server"
        argv = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
        self._process = subprocess.Popen(
            [*argv, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/moto-api/", process=self._process)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._process = None

    def client(self) -> Any:
        """A Secrets Manager client for a test's own set-up and rotations."""
        import boto3

        return boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
