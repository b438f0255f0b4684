#!/usr/bin/env python3
"""CDK app entry (cdk.json: ``python3 app.py``): builds the stack, applies cdk-nag, synthesizes."""

from infra.builder import build_app


def main() -> None:
    # The CLI hands cdk.json's context (and any -c) to the app itself: do not load it twice.
    app, _ = build_app(load_cdk_json=False)
    app.synth()


if __name__ == "__main__":
    main()
