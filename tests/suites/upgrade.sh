#!/usr/bin/env bash
# Upgrades: every released version, updated with ALTER EXTENSION ... UPDATE,
# must end with the same catalog as a fresh install of the current version:
# the same routines with the same signatures, settings, comments and grants,
# the same tables, views, columns and indexes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster upgrade 54418

# Everything an object of the extension is, one line each, in a stable order.
catalog() {
    sql "$1" "
    WITH members AS (
        SELECT d.classid, d.objid FROM pg_depend d
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'authfort_cleanup'))
    SELECT 'routine ' || p.oid::regprocedure || ' -> ' || coalesce(pg_get_function_result(p.oid), '(procedure)')
           || ' ' || p.prokind::text || p.provolatile::text || p.prosecdef::text || p.proisstrict::text
           || ' config=' || coalesce(p.proconfig::text, '') || ' acl=' || coalesce(p.proacl::text, '')
           || ' src=' || md5(p.prosrc) || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
           || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
           || CASE WHEN c.relkind = 'v' THEN ' view=' || md5(pg_get_viewdef(c.oid)) ELSE '' END
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' notnull=' || a.attnotnull::text || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
           || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT 'extension ' || extversion || ' config=' || coalesce(extconfig::regclass[]::text, '')
      FROM pg_extension WHERE extname = 'authfort_cleanup'
    ORDER BY 1"
}

current=$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml")
new_authfort_db fresh >/dev/null
catalog fresh >"$CLUSTER_DIR/fresh.catalog"
check "a fresh install is version $current" "$current" "$(sql fresh "SELECT extversion FROM pg_extension WHERE extname = 'authfort_cleanup'")"

for script in "$repo"/sql/authfort_cleanup--*.sql; do
    name=$(basename "$script" .sql)
    [[ $name =~ ^authfort_cleanup--([0-9.]+)$ ]] || continue
    released=${BASH_REMATCH[1]}
    [ "$released" != "$current" ] || continue
    db="from_${released//./_}"
    new_authfort_db "$db" >/dev/null
    sql "$db" "DROP EXTENSION authfort_cleanup" "CREATE EXTENSION authfort_cleanup VERSION '$released'"
    # A run log row written by the old version must survive the update.
    sql "$db" "SELECT * FROM authfort_cleanup_all()" >/dev/null 2>&1
    sql "$db" "ALTER EXTENSION authfort_cleanup UPDATE"
    catalog "$db" >"$CLUSTER_DIR/$db.catalog"
    if diff -u "$CLUSTER_DIR/fresh.catalog" "$CLUSTER_DIR/$db.catalog"; then
        check "$released -> $current gives the catalog of a fresh install" same same
    else
        check "$released -> $current gives the catalog of a fresh install" same different
    fi
    check "$released -> $current keeps the run log" 1 "$(sql "$db" "SELECT count(*) FROM authfort_cleanup_runs")"
    check "$released -> $current: the status view works" 3 "$(sql "$db" "SELECT count(*) FROM authfort_cleanup_status")"
done
finish
