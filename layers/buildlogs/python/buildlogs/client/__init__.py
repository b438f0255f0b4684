"""What runs on a user's machine (CLI, console, local run): never shipped in the Lambda layer."""
