"""The hub role: web app, agent gateway, ingest and API."""
