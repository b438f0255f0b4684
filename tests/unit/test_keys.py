"""Redis and S3 key names: where a build's objects live, and hostile ids rejected."""

import pytest

from buildlogs.keys import index_key


def test_the_index_key_sits_next_to_the_log_and_rejects_hostile_ids() -> None:
    assert index_key("b-1") == "build-logs/b-1/index.json"
    with pytest.raises(ValueError, match="invalid build id"):
        index_key("../x")
