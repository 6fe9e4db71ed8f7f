"""The API serves the AsyncAPI document, open like the OpenAPI one: as JSON, and as a page."""

import html

import pytest

from contracts.asyncapi import asyncapi_document
from tests.integration.conftest import api_client

pytestmark = [pytest.mark.integration, pytest.mark.index_databases("sqlite")]


async def test_the_asyncapi_document_is_served_to_anyone_as_json_and_as_a_page(nats_url, topology, js, settings_for):
    async with api_client(settings_for(nats_url, topology), holder=None) as anyone:
        served = await anyone.get("/asyncapi")
        assert served.status_code == 200 and served.json() == asyncapi_document(topology)
        page = await anyone.get("/asyncapi.html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for channel in served.json()["channels"].values():
            assert html.escape(channel["address"]) in page.text
        assert (await anyone.get("/workflows")).status_code == 401  # the rest still asks for a token
