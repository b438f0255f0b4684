"""Live log streams: line shaping, the Redis writer, LogStreamer, LogReader, summaries."""
