"""The archiver: a finished build's stream as NDJSON in S3, its index, reading it back, the sweep."""
