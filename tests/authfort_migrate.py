"""Creates AuthFort's schema in a database with AuthFort's own migrations.

usage: authfort_migrate.py postgresql+asyncpg://user@host:port/db

The tables land in the first schema of the connection's search_path, so a
test that wants them elsewhere sets the database's search_path first.
"""

import asyncio
import sys

from authfort import AuthFort


async def migrate(url: str) -> None:
    auth = AuthFort(database_url=url)
    try:
        await auth.migrate()
    finally:
        await auth.dispose()


if __name__ == "__main__":
    asyncio.run(migrate(sys.argv[1]))
