"""buildlogs: stream every build stage's sandbox output into Redis Streams, archive it to S3."""
