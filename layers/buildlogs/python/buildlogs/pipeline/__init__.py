"""The build pipeline: the stage registry, BuildSpec and state models, each stage's steps, sandboxes."""
