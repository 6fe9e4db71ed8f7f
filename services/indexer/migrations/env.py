"""Alembic's entry: migrate the index at the URL the indexer hands over (services/indexer/schema.py)."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.index import metadata


def migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None  # set by who runs the migrations (services/indexer/projection.py)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(run())
