"""Helpers of the backup tests: a real S3 endpoint on loopback (moto's server
mode) that can be stopped and started again, the settings of an app backing
up into it, and readers of the bucket and the storage folder."""

import hashlib
import time

import boto3
import requests
from moto.server import ThreadedMotoServer

from .servers import free_port, wait_for  # noqa: F401 (the backup tests take them from here)

# Distinctive values, so that a test can look for them everywhere.
ACCESS_KEY = "AKIABACKUPTESTKEY7Q"
SECRET_KEY = "sEcReT+backup/test-Value-9f3c1e"
PREFIX = "studio"


class S3:
    """A moto server on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        for _ in range(100):  # until it answers
            try:
                requests.get(self.url, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.02)

    def stop(self):
        self.server.stop()

    def client(self, **creds):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=creds.get("key", ACCESS_KEY),
                            aws_secret_access_key=creds.get("secret", SECRET_KEY))

    def enforce_auth(self, on: bool):
        """moto checks credentials (against its IAM) from now on, or stops checking."""
        requests.post(f"{self.url}/moto-api/reset-auth", data="0" if on else "inf", timeout=5)


def backup_config(storage_dir, bucket, endpoint, **extra) -> dict:
    return {"TESTING": True, "STORAGE_DIR": str(storage_dir), "HISTORY_CHECK_WAITS": True,
            "MAX_VIDEO_FRAMES": 24, "LOCAL_VIDEO_SIZE": 96,
            "BACKUP_URL": f"s3://{bucket}/{PREFIX}", "BACKUP_ENDPOINT_URL": endpoint,
            "BACKUP_CONNECT_TIMEOUT": 1, "BACKUP_READ_TIMEOUT": 2, "BACKUP_MAX_ATTEMPTS": 1,
            "BACKUP_RETRY_SECONDS": 0.2, "BACKUP_RETRY_MAX_SECONDS": 0.5,
            "BACKUP_POLL_SECONDS": 0.2, **extra}


def objects(s3, bucket) -> dict:
    """``{name under the prefix: (bytes, sha256 metadata)}`` of the bucket."""
    client, found = s3.client(), {}
    for o in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        got = client.get_object(Bucket=bucket, Key=o["Key"])
        found[o["Key"][len(PREFIX) + 1:]] = (got["Body"].read(), got["Metadata"].get("sha256"))
    return found


def local_files(storage_dir) -> dict:
    """``{name: bytes}`` of the operation files of a storage folder."""
    return {p.name: p.read_bytes() for p in storage_dir.iterdir() if p.is_file()
            and not p.name.startswith(".")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate(client, path="/api/generate/text-to-image", **fields):
    """``(status, operation id)`` of a POST; fields with files go as multipart."""
    if any(isinstance(v, (list, tuple)) for v in fields.values()):
        answer = client.post(path, data=fields, content_type="multipart/form-data")
    else:
        answer = client.post(path, json=fields)
    return answer.status_code, (answer.get_json() or {}).get("operationId")
