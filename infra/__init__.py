"""The AWS CDK app of buildlogs: one construct per capability, composed by ``BuildlogsStack``.

Importing it first quiets jsii's end-of-life banner for this machine's Node (jsii silences it only
when the variable names the running Node's major version, e.g. ``20``): the CDK app, its tests
and the local run's in-process synth all import ``infra`` before ``aws_cdk`` starts its Node.
"""

import os
import shutil
import subprocess

_SILENCE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


def _node_major() -> str:
    node = shutil.which("node")
    if node is None:
        return ""
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return version.strip().lstrip("v").split(".")[0]


if _SILENCE not in os.environ and (_major := _node_major()):
    os.environ[_SILENCE] = _major
