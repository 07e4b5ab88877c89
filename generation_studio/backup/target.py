"""The backup store: ``BACKUP_URL=s3://bucket/prefix`` on any S3-compatible
service, reached with boto3.

Credentials and the region are boto3's own business (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``...): they
are never read, kept or shown here. Timeouts and retries are short (seconds,
not boto3's minutes), and every failure becomes one clear line
(``BackupError``) with the credentials masked.
"""

import base64
import hashlib
import re
from datetime import datetime, timezone
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bx
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MB = 1024 * 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
            "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}


class BackupError(Exception):
    """A backup failure, said in one line a person can act on."""


def parse_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; BackupError otherwise."""
    parts = urlsplit(url or "")
    if "@" in (url or ""):  # never echoed: what precedes it may be a secret
        raise BackupError("BACKUP_URL must not carry credentials: give them the boto3 way "
                          "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or a profile)")
    if parts.scheme != "s3" or not _BUCKET.match(parts.netloc) or parts.query or parts.fragment:
        raise BackupError(f"BACKUP_URL must look like s3://bucket/prefix, with a bucket name of "
                          f"3-63 lowercase letters, digits, dots or dashes (got {url!r})")
    return parts.netloc, parts.path.strip("/")


class Target:
    """One bucket and prefix; keys are ``prefix/<file name on disk>``."""

    def __init__(self, config):
        self.bucket, self.prefix = parse_url(config["BACKUP_URL"])
        self.endpoint = config.get("BACKUP_ENDPOINT_URL") or None
        self.attempts = config["BACKUP_MAX_ATTEMPTS"]
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint, config=Config(
            connect_timeout=config["BACKUP_CONNECT_TIMEOUT"],
            read_timeout=config["BACKUP_READ_TIMEOUT"],
            retries={"total_max_attempts": config["BACKUP_MAX_ATTEMPTS"], "mode": "standard"}))
        self.transfer = TransferConfig(multipart_threshold=config["BACKUP_MULTIPART_MB"] * MB,
                                       multipart_chunksize=config["BACKUP_MULTIPART_MB"] * MB,
                                       max_concurrency=4)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def name_of(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def call(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with boto3's failures as one BackupError line."""
        try:
            return fn(*args, **kwargs)
        except (bx.BotoCoreError, bx.ClientError, Boto3Error, OSError) as e:
            raise BackupError(f"{what}: {self.explain(e)}") from None

    def explain(self, e: Exception) -> str:
        while isinstance(e, Boto3Error) and e.__context__ is not None:
            e = e.__context__  # the transfer manager's wrapper: the store's own answer is inside
        code = str(e.response.get("Error", {}).get("Code")) if isinstance(e, bx.ClientError) else ""
        where = self.endpoint or "AWS S3"
        if code in ("NoSuchBucket", "404"):
            return f"the bucket {self.bucket!r} does not exist at {where}"
        if code in _REFUSED:
            return (f"{where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID, "
                    f"AWS_SECRET_ACCESS_KEY or AWS_PROFILE and their rights on {self.bucket!r}")
        if isinstance(e, bx.NoCredentialsError):
            return ("no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(or AWS_PROFILE)")
        if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError,
                          bx.ReadTimeoutError, bx.ConnectionClosedError)):
            return (f"{where} does not answer ({type(e).__name__}); gave up after "
                    f"{self.attempts} attempt(s)")
        return self.mask(f"{type(e).__name__}: {e}")

    def mask(self, text: str) -> str:
        """``text`` with the session's credentials, should any appear, masked."""
        creds = self.client._request_signer._credentials  # noqa: SLF001 (no public getter)
        for secret in (getattr(creds, "access_key", None), getattr(creds, "secret_key", None),
                       getattr(creds, "token", None)):
            if secret:
                text = text.replace(secret, "****")
        return text

    # Operations, each answering BackupError on failure ---------------------------
    def check(self) -> None:
        self.call(f"Cannot use {self.url}", self.client.list_objects_v2, Bucket=self.bucket,
                  MaxKeys=1, Prefix=self.key(""))

    def listing(self) -> dict[str, dict]:
        """``{file name: {"size", "etag", "modified"}}`` of every object under the prefix."""
        found = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key(""))
        for page in self.call(f"Cannot list {self.url}", list, pages):
            for o in page.get("Contents", []):
                found[self.name_of(o["Key"])] = {"size": o["Size"], "etag": o["ETag"],
                                                 "modified": o["LastModified"]}
        return found

    def head(self, name: str) -> dict | None:
        """``{"size", "etag", "sha256"}`` of one object, or None when it is not there."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except bx.ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return None
            raise BackupError(f"Cannot read {name} in {self.url}: {self.explain(e)}") from None
        except (bx.BotoCoreError, OSError) as e:
            raise BackupError(f"Cannot read {name} in {self.url}: {self.explain(e)}") from None
        return {"size": r["ContentLength"], "etag": r["ETag"],
                "sha256": r.get("Metadata", {}).get("sha256")}

    def upload(self, source, name: str, sha256: str, content_type: str,
               size: int) -> str | None:
        """Send a file (a path, or a readable binary object). Up to the multipart
        threshold, one PUT carrying its sha256 as the S3 checksum, which the
        store checks against the bytes it received: the ETag is returned.
        Larger ones go through boto3's transfer manager, in parts with flat
        memory (the caller checks the result with a HEAD: None is returned)."""
        what = f"Cannot upload {name} to {self.url}"
        extra = {"Metadata": {"sha256": sha256}, "ContentType": content_type}
        if size < self.transfer.multipart_threshold:
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()

            def put():
                with (source if hasattr(source, "read") else open(source, "rb")) as body:
                    return self.client.put_object(Bucket=self.bucket, Key=self.key(name),
                                                  Body=body, ChecksumSHA256=checksum, **extra)
            return self.call(what, put)["ETag"]
        extra["ChecksumAlgorithm"] = "SHA256"
        if hasattr(source, "read"):
            fn, args = self.client.upload_fileobj, (source, self.bucket, self.key(name))
        else:
            fn, args = self.client.upload_file, (str(source), self.bucket, self.key(name))
        self.call(what, fn, *args, ExtraArgs=extra, Config=self.transfer)
        return None

    def sha256_of(self, name: str) -> str:
        """The sha256 of an object's bytes as stored, read in a stream."""
        def read():
            digest = hashlib.sha256()
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
            for chunk in body.iter_chunks(MB):
                digest.update(chunk)
            return digest.hexdigest()
        return self.call(f"Cannot read {name} in {self.url}", read)

    def download(self, name: str, path, size: int) -> str | None:
        """Write an object to ``path``; return the sha256 stored with it. Up to
        the multipart threshold one GET (streamed); larger ones in parts."""
        what = f"Cannot download {name} from {self.url}"
        if size >= self.transfer.multipart_threshold:
            self.call(what, self.client.download_file, self.bucket, self.key(name), str(path),
                      Config=self.transfer)
            return (self.head(name) or {}).get("sha256")

        def get():
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            with open(path, "wb") as f:
                for chunk in answer["Body"].iter_chunks(MB):
                    f.write(chunk)
            return answer.get("Metadata", {}).get("sha256")
        return self.call(what, get)

    def delete(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):
            batch = [{"Key": self.key(n)} for n in names[start:start + 1000]]
            self.call(f"Cannot delete from {self.url}", self.client.delete_objects,
                      Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def abort_stale_uploads(self, older_than) -> int:
        """Abort multipart uploads begun longer ago than ``older_than`` (a timedelta)."""
        def abort():
            count, cutoff = 0, datetime.now(timezone.utc) - older_than
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.key(""))
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                        count += 1
            return count
        return self.call(f"Cannot tidy the unfinished uploads of {self.url}", abort)
