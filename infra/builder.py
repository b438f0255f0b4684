"""Building the CDK app: the same way for ``cdk synth`` (app.py), the tests and infra.definition."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Aspects
from cdk_nag import AwsSolutionsChecks

from infra.config import StackSettings, cdk_json_context
from infra.constants import STACK_ID
from infra.nag import add_suppressions
from infra.stack import BuildlogsStack


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    nag: bool = True,
    load_cdk_json: bool = True,
) -> tuple[App, BuildlogsStack]:
    """The app and its stack. In-process callers (tests, infra.definition) pass ``load_cdk_json``
    (default) so they see cdk.json's context as the CLI does; ``context`` overrides it. Under the
    CLI (app.py) the CLI already passed cdk.json's context, so app.py sets ``load_cdk_json=False``."""
    merged: dict[str, Any] = dict(cdk_json_context()) if load_cdk_json else {}
    merged.update(context or {})
    app = App(context=merged, outdir=outdir) if outdir else App(context=merged)
    settings = StackSettings.from_node(app.node)
    # Env-agnostic: synth needs no account, no credentials and no lookups; `cdk deploy` takes the
    # account and region of the caller's credentials.
    stack = BuildlogsStack(
        app,
        f"{STACK_ID}-{settings.env_name}",
        settings=settings,
        description="buildlogs: a build pipeline whose stages stream their logs live (Step Functions, Lambda, Redis)",
    )
    add_suppressions(stack)
    if nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack
