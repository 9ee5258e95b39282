"""One blueprint per feature: ops, auth_views, portal, admin, api, openai."""
