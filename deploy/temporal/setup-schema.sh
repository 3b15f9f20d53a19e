#!/bin/sh
# One-shot job (temporalio/admin-tools): creates Temporal's two databases on temporal-db if
# they are missing and brings both schemas up to the version of this admin-tools image.
# It runs on every `docker compose up`; each step leaves an up-to-date database as it is.
# After upgrading the Temporal image tag, this job applies the new schema versions before
# the server starts.
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}" # read by temporal-sql-tool itself
port="${DB_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" \
        -u "$POSTGRES_USER" "$@"
}

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
    db="${pair%%:*}"
    kind="${pair##*:}"
    echo "setup-schema: $db ($kind)"
    # `create` fails when the database exists; any other failure (host, password) makes
    # the next command fail too, and the job with it.
    sql --db "$db" create || echo "setup-schema: $db already exists"
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$schemas/$kind/versioned"
done
echo "setup-schema: done"
