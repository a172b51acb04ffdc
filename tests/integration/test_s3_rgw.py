"""The RGW fixture itself (tests/s3/rgw.py): a real S3 server that enforces signatures,
the multipart minimum and pagination, and that tests can stop and restart."""
import botocore.exceptions
import pytest


def test_rgw_is_a_working_s3_server(rgw):
    s3 = rgw.client()
    env = rgw.env()
    bucket = env["TUSC_S3_BUCKET"]
    s3.put_object(Bucket=bucket, Key="fixture/a b/ü", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="fixture/a b/ü")["Body"].read() == b"hello"
    # The real 5 MiB minimum: a small non-last part fails the completion.
    mp = s3.create_multipart_upload(Bucket=bucket, Key="fixture/mp")
    parts = []
    for n in (1, 2):
        r = s3.upload_part(Bucket=bucket, Key="fixture/mp", UploadId=mp["UploadId"],
                           PartNumber=n, Body=b"x" * 10)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="fixture/mp", UploadId=mp["UploadId"],
                                     MultipartUpload={"Parts": parts})
    assert e.value.response["Error"]["Code"] == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=bucket, Key="fixture/mp", UploadId=mp["UploadId"])
    s3.delete_object(Bucket=bucket, Key="fixture/a b/ü")


def test_rgw_outage_and_lowered_minimum(rgw_factory):
    rgw = rgw_factory(64 * 1024)
    s3 = rgw.client()
    bucket = rgw.env()["TUSC_S3_BUCKET"]
    assert rgw.env()["TUSC_S3_MIN_PART_SIZE"] == str(64 * 1024)
    s3.put_object(Bucket=bucket, Key="kept", Body=b"kept")
    rgw.stop_radosgw()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        s3.get_object(Bucket=bucket, Key="kept")
    rgw.start_radosgw()
    # Data lives in the OSD: it survives a radosgw restart.
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"kept"
    # With the lowered minimum, 64 KiB parts complete.
    mp = s3.create_multipart_upload(Bucket=bucket, Key="small-parts")
    parts = []
    for n in (1, 2):
        r = s3.upload_part(Bucket=bucket, Key="small-parts", UploadId=mp["UploadId"],
                           PartNumber=n, Body=bytes([n]) * (64 * 1024))
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="small-parts", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="small-parts")["ContentLength"] == 128 * 1024
