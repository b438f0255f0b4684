"""The AWS CDK app of buildlogs: one construct per capability, composed by ``BuildlogsStack``."""
