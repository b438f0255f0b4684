"""The archiver writes the log's text renderings (build.txt, build.ansi.txt) in the same streaming pass."""

from typing import Any

import pytest
from botocore.exceptions import ClientError
from redis.asyncio import Redis

from buildlogs.archive.archiver import TEXT_CONTENT_TYPE, archive_logs
from buildlogs.keys import archive_key, logs_key, text_key
from tests.support.archive import BUCKET, CountingS3, multipart_uploads, stream_records, write_build_log, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600


def _keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def _object(s3: Any, key: str) -> tuple[str, dict[str, Any]]:
    response = s3.get_object(Bucket=BUCKET, Key=key)
    return response["Body"].read().decode("utf-8"), response


async def test_both_renderings_hold_every_entry_text_in_order(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a realistic log with a coloured stderr line, unicode and system lines
    await write_build_log(redis, build_id)

    # WHEN it is archived
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", ttl_seconds=TTL)

    # THEN build.ansi.txt is each entry's text as printed, one per line (system lines and end included)
    assert result is not None
    texts = [record["text"] for record in await stream_records(redis, build_id)]
    kept, kept_response = _object(s3, text_key(build_id, ansi=True))
    assert kept == "\n".join(texts) + "\n"
    assert "\x1b[31mred\x1b[0m" in kept.splitlines()
    assert kept.splitlines()[-1] == "end of log: FAILED"
    # AND build.txt is the same without escapes
    plain, plain_response = _object(s3, text_key(build_id))
    assert plain == kept.replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert "\x1b" not in plain
    assert "red" in plain.splitlines()
    assert "warn: é ünïcode ✓" in plain.splitlines()
    for response in (kept_response, plain_response):
        assert response["ContentType"] == TEXT_CONTENT_TYPE
        assert response["Metadata"]["last-id"] == result.last_id


async def test_large_renderings_stream_in_parts_and_match_the_stream(
    redis: Redis, s3: Any, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a log of many parts, some lines coloured (moto's minimum part size lowered like S3's 5 MiB)
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)
    await write_lines(redis, build_id, 3000)
    await redis.xadd(logs_key(build_id), {"ts": 1, "source": "stderr", "phase": "build", "text": "\x1b[1;31mERR\x1b[m"})
    counting = CountingS3(s3)

    # WHEN it is archived with 16 KiB parts and pages of 100 entries
    await archive_logs(redis, counting, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL, part_size=16384, page_size=100)

    # THEN each rendering went up in several parts and reads back whole
    for ansi in (False, True):
        assert len(counting.sizes_by_key[text_key(build_id, ansi=ansi)]) >= 10
    texts = [record["text"] for record in await stream_records(redis, build_id)]
    assert _object(s3, text_key(build_id, ansi=True))[0] == "\n".join(texts) + "\n"
    plain = _object(s3, text_key(build_id))[0].splitlines()
    assert plain[:3000] == texts[:3000]
    assert plain[3000:] == ["ERR", "end of log: SUCCEEDED"]
    assert multipart_uploads(s3) == []


async def test_a_failed_upload_leaves_no_rendering_behind(
    redis: Redis, s3: Any, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN S3 failing the completion of the log object (after its renderings completed)
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)
    await write_lines(redis, build_id, 2000)
    flaky = CountingS3(s3, fail_method="complete_multipart_upload", fail_on_call=3)

    # WHEN the first attempt fails
    with pytest.raises(Exception, match="injected"):
        await archive_logs(redis, flaky, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL, part_size=16384)

    # THEN nothing is left: no log object, no rendering (both had completed), no upload orphaned;
    # the retry writes all three
    assert multipart_uploads(s3) == []
    assert _keys(s3) == set()
    assert set(flaky.keys["delete_object"]) == {text_key(build_id), text_key(build_id, ansi=True)}
    result = await archive_logs(redis, flaky, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL, part_size=16384)
    assert result is not None
    texts = [record["text"] for record in await stream_records(redis, build_id)]
    assert _object(s3, text_key(build_id))[0] == "\n".join(texts) + "\n"


async def test_a_failed_single_put_leaves_no_rendering_behind(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a small log (one PUT per object: build.txt, build.ansi.txt, then build.jsonl) and S3
    # failing the third PUT, the log object's
    await write_lines(redis, build_id, 20)
    flaky = CountingS3(s3, fail_method="put_object", fail_on_call=3)

    # WHEN the attempt fails
    with pytest.raises(Exception, match="injected"):
        await archive_logs(redis, flaky, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN the two renderings it had written are deleted: no key is left
    assert flaky.keys["put_object"][:2] == [text_key(build_id), text_key(build_id, ansi=True)]
    assert _keys(s3) == set()
    # AND the retry writes all three
    assert await archive_logs(redis, flaky, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL) is not None
    assert {text_key(build_id), text_key(build_id, ansi=True), archive_key(build_id)} <= _keys(s3)


class _UndeletableS3(CountingS3):
    """Fails the log object's PUT once, and every DeleteObject."""

    def __init__(self, client: Any) -> None:
        super().__init__(client, fail_method="put_object", fail_on_call=3)

    def delete_object(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no delete"}}, "DeleteObject")


async def test_a_failed_cleanup_is_logged_and_the_upload_error_still_raised(
    redis: Redis, s3: Any, build_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    await write_lines(redis, build_id, 20)
    with pytest.raises(ClientError, match="injected"):
        await archive_logs(redis, _UndeletableS3(s3), BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    failures = [record for record in caplog.records if record.getMessage() == "could not delete an abandoned object"]
    assert sorted(getattr(record, "key", "") for record in failures) == sorted(
        [text_key(build_id), text_key(build_id, ansi=True)]
    )
