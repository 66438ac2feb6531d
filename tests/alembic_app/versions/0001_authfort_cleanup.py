"""Install authfort_cleanup and the index its session cleanup needs.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The name authfort_cleanup_create_indexes() gives this index, so that the
# extension finds it and creates nothing (any valid btree on replaced_by
# would do). Without it every deleted session costs a scan of the table.
REPLACED_BY_INDEX = "ix_authfort_refresh_tokens_replaced_by"


def upgrade() -> None:
    # IF NOT EXISTS on both: the autocommit block below commits the
    # extension first, so a retry after a failed index build must not fail
    # on it.
    op.execute("CREATE EXTENSION IF NOT EXISTS authfort_cleanup")
    # CONCURRENTLY keeps AuthFort's logins and refreshes writing while the
    # index builds, and cannot run inside a transaction block. A build that
    # is interrupted leaves an INVALID index, which IF NOT EXISTS then skips:
    # drop it, and upgrade again.
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {REPLACED_BY_INDEX}"
            " ON authfort_refresh_tokens (replaced_by)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {REPLACED_BY_INDEX}")
    # Drops the extension's own objects too, its run log among them.
    # AuthFort's tables and rows stay as they are.
    op.execute("DROP EXTENSION IF EXISTS authfort_cleanup")
