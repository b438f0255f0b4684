"""The REST API: Powertools resolver, routes, response schemas and error mapping (``buildlogs.api.app``)."""
