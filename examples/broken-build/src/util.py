"""A healthy module beside the broken one."""


def shout(text: str) -> str:
    return text.upper() + "!"
