#!/bin/sh
# Runs once, when the grades-db data directory is first created (the postgres image runs
# /docker-entrypoint-initdb.d/* as the superuser). It creates the application's role and
# database with least privilege:
#   - the role logs in and nothing else: not a superuser, cannot create roles or databases,
#     cannot replicate or bypass row-level security;
#   - the database belongs to the superuser; PUBLIC may not connect to it, the application
#     role may connect (and use temporary tables); nobody but the superuser may connect to
#     the maintenance database either;
#   - the application owns one schema, `gradesync`, where the workers' migrations create
#     and alter their tables; `public` is closed to everyone.
# Passwords come from the environment (see .env.example), never from this file. Changing
# GRADES_APP_PASSWORD later does not reach an existing volume: use ALTER ROLE ... PASSWORD.
set -eu

: "${GRADES_APP_PASSWORD:?set GRADES_APP_PASSWORD}"
app_user="${GRADES_APP_USER:-app}"
app_db="${GRADES_DB_NAME:-grades}"

# psql variables (:"name" quotes an identifier, :'name' a literal), so no value is ever
# spliced into SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    -v app_user="$app_user" -v app_password="$GRADES_APP_PASSWORD" -v app_db="$app_db" \
    -v admin="$POSTGRES_USER" -v admin_db="${POSTGRES_DB:-$POSTGRES_USER}" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
CREATE DATABASE :"app_db" OWNER :"admin";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_db" TO :"app_user";
REVOKE CONNECT ON DATABASE :"admin_db" FROM PUBLIC;

\connect :"app_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA gradesync AUTHORIZATION :"app_user";
ALTER ROLE :"app_user" IN DATABASE :"app_db" SET search_path = gradesync;
SQL

echo "init-role-db: role \"$app_user\" owns schema gradesync in database \"$app_db\""
