"""A module with a syntax error on purpose: the build stage reports it and the build fails."""


def greet(name: str) -> str
    return f"hello, {name}"
