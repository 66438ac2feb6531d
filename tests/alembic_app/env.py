"""Runs this application's migrations on its own connection, over asyncpg."""

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table=config.get_main_option("version_table"),
        # Alembic's advice for trees with autocommit blocks: each block
        # commits the migrations before it, so let each migration be its own
        # transaction instead of one that silently gets split.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    try:
        # connect(), not begin() as AuthFort's migrate() does: an
        # autocommit_block() can only commit a transaction that Alembic
        # began itself, and fails inside one the caller holds.
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


asyncio.run(run_migrations_online())
