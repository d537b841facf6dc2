/*
 * pg.c - the PostgreSQL back end: connection, schema, transactions, the audit table and
 * tree, and the helpers pg_ledger.c and pg_views.c share.
 *
 * URL: "postgresql://..." or "postgres://...", a libpq connection URI as it is (user,
 * password or a .pgpass/PGPASSFILE, host, port, sslmode, options=-csearch_path=S for a
 * store in schema S ...).  Any number of keybrokerd instances may serve one such store:
 * each group commit of each instance first locks the one row of writer_lock, so the
 * audit log has one total order whoever writes it (docs/architecture.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

#define SCHEMA_VERSION 10
#define WALK_CHUNK     1000 /* rows an audit walk fetches at once */

/* ---- parameters and results ---- */

void kbr_pg_text(kbr_pg_params *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

void kbr_pg_int(kbr_pg_params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
    kbr_pg_text(p, p->num[p->n]);
}

void kbr_pg_bytes(kbr_pg_params *p, const void *b, size_t n)
{
    p->v[p->n] = n > 0 ? b : "";
    p->len[p->n] = (int)n;
    p->fmt[p->n] = 1;
    p->n++;
}

kbr_err kbr_pg_result_err(const PGresult *res)
{
    const char *state;

    if (res == NULL)
        return KBR_ERR_STORE;
    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
        return KBR_OK;
    default:
        break;
    }
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL)
        return KBR_ERR_STORE; /* no answer from the server: the connection */
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return KBR_ERR_STORE_CONSTRAINT;
    if (strncmp(state, "42", 2) == 0)
        return KBR_ERR_INTERNAL; /* SQL this back end got wrong */
    return KBR_ERR_STORE;
}

const char *kbr_pg_value(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* A broken connection is made again only between transactions: a transaction that lost its
 * connection is lost, and its caller hears so. */
static void reconnect_if_broken(kbr_pg *s)
{
    if (PQstatus(s->conn) == CONNECTION_OK || s->in_tx || s->in_snapshot)
        return;
    PQreset(s->conn);
    s->nprepared = 0;
    s->lease = false;
    if (PQstatus(s->conn) == CONNECTION_OK) {
        PQsetClientEncoding(s->conn, "UTF8");
        PQclear(PQexec(s->conn, "SET synchronous_commit = on"));
    }
}

/* The statement's name on this connection, preparing it the first time; -1 when the cache
 * is full (the statement then runs unprepared). */
static kbr_err prepared(kbr_pg *s, const char *sql, int nparams, int *id)
{
    PGresult *res;
    char name[16];
    kbr_err err;

    *id = -1;
    for (int i = 0; i < s->nprepared; i++)
        if (s->prepared[i] == sql) {
            *id = i;
            return KBR_OK;
        }
    if (s->nprepared == KBR_PG_STMTS)
        return KBR_OK;
    snprintf(name, sizeof(name), "k%d", s->nprepared);
    res = PQprepare(s->conn, name, sql, nparams, NULL);
    err = kbr_pg_result_err(res);
    PQclear(res);
    if (err != KBR_OK)
        return err;
    s->prepared[s->nprepared] = sql;
    *id = s->nprepared++;
    return KBR_OK;
}

static kbr_err exec_once(kbr_pg *s, const char *sql, const kbr_pg_params *p, bool prepare,
                         PGresult **out);

/*
 * A connection learns that its server went away (restarted, failed over) only when it next
 * speaks: outside a transaction, a statement that failed for that reason is sent once more on
 * a new connection, so a database that came back costs no request.  Inside one the
 * transaction is lost, and its caller hears so.
 */
static kbr_err exec_with(kbr_pg *s, const char *sql, const kbr_pg_params *p, bool prepare,
                         PGresult **out)
{
    kbr_err err = exec_once(s, sql, p, prepare, out);

    if (err == KBR_ERR_STORE && !s->in_tx && !s->in_snapshot && PQstatus(s->conn) != CONNECTION_OK)
        err = exec_once(s, sql, p, prepare, out);
    return err;
}

static kbr_err exec_once(kbr_pg *s, const char *sql, const kbr_pg_params *p, bool prepare,
                         PGresult **out)
{
    static const kbr_pg_params none = {.n = 0};
    PGresult *res = NULL;
    kbr_err err = KBR_OK;
    char name[16];
    int id = -1;

    if (out != NULL)
        *out = NULL;
    if (p == NULL)
        p = &none;
    reconnect_if_broken(s);
    if (PQstatus(s->conn) != CONNECTION_OK)
        return KBR_ERR_STORE;
    if (prepare)
        KBR_GUARD(prepared(s, sql, p->n, &id));
    if (id >= 0) {
        snprintf(name, sizeof(name), "k%d", id);
        res = PQexecPrepared(s->conn, name, p->n, p->v, p->len, p->fmt, 0);
    } else {
        res = PQexecParams(s->conn, sql, p->n, NULL, p->v, p->len, p->fmt, 0);
    }
    err = kbr_pg_result_err(res);
    if (err != KBR_OK && getenv("KBR_PG_TRACE") != NULL)
        fprintf(stderr, "pg: %s\n  %s", sql, PQerrorMessage(s->conn));
    if (err == KBR_OK && out != NULL) {
        *out = res;
        res = NULL;
    }
out:
    PQclear(res);
    return err;
}

kbr_err kbr_pg_exec(kbr_pg *s, const char *sql, const kbr_pg_params *p, PGresult **res)
{
    return exec_with(s, sql, p, true, res);
}

kbr_err kbr_pg_run(kbr_pg *s, const char *sql, const kbr_pg_params *p, int64_t *changed)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    if (changed != NULL)
        *changed = 0;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    if (changed != NULL)
        *changed = strtoll(PQcmdTuples(res), NULL, 10);
out:
    PQclear(res);
    return err;
}

kbr_err kbr_pg_exists(kbr_pg *s, const char *sql, const kbr_pg_params *p, bool *exists)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    *exists = false;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    *exists = PQntuples(res) > 0;
out:
    PQclear(res);
    return err;
}

kbr_err kbr_pg_int64(kbr_pg *s, const char *sql, const kbr_pg_params *p, int64_t *v)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    const char *text;

    *v = 0;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    KBR_ENSURE(PQntuples(res) > 0, KBR_ERR_NOT_FOUND);
    text = kbr_pg_value(res, 0, 0);
    *v = text != NULL ? strtoll(text, NULL, 10) : 0;
out:
    PQclear(res);
    return err;
}

kbr_err kbr_pg_string(kbr_pg *s, const char *sql, const kbr_pg_params *p, char **v)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    *v = NULL;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    KBR_ENSURE(PQntuples(res) > 0 && kbr_pg_value(res, 0, 0) != NULL, KBR_ERR_NOT_FOUND);
    *v = strdup(kbr_pg_value(res, 0, 0));
    KBR_ENSURE(*v != NULL, KBR_ERR_NOMEM);
out:
    PQclear(res);
    return err;
}

static kbr_err column_value(const PGresult *res, int row, int col, kbr_col_kind kind, json_t **out)
{
    kbr_err err = KBR_OK;
    const char *text = kbr_pg_value(res, row, col);

    *out = NULL;
    if (kind == KBR_COL_BOOL) {
        *out = json_boolean(text != NULL && strcmp(text, "0") != 0 && strcmp(text, "f") != 0);
        goto out;
    }
    if (text == NULL) {
        *out = kind == KBR_COL_INT ? json_integer(0) : json_null();
        goto out;
    }
    if (kind == KBR_COL_INT || kind == KBR_COL_INT_OR_NULL)
        *out = json_integer(strtoll(text, NULL, 10));
    else if (kind == KBR_COL_JSON)
        *out = json_loads(text, JSON_DECODE_ANY, NULL);
    else
        *out = json_string(text);
    /* The writer stored valid UTF-8 and JSON; a failure here is damage. */
    KBR_ENSURE(*out != NULL, KBR_ERR_STORE);
out:
    return err;
}

kbr_err kbr_pg_put_columns(json_t *obj, const PGresult *res, int row, int first,
                           const kbr_col_spec *cols, size_t n)
{
    kbr_err err = KBR_OK;
    json_t *v = NULL;

    KBR_ENSURE(PQnfields(res) >= first + (int)n, KBR_ERR_INTERNAL);
    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(column_value(res, row, first + (int)i, cols[i].kind, &v));
        KBR_ENSURE(json_object_set_new(obj, cols[i].field, v) == 0, KBR_ERR_NOMEM);
        v = NULL;
    }
out:
    return err;
}

static kbr_err row_object(const PGresult *res, int row, const kbr_col_spec *cols, size_t n,
                          json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *obj = json_object();

    *out = NULL;
    KBR_ENSURE(obj != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_pg_put_columns(obj, res, row, 0, cols, n));
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    return err;
}

kbr_err kbr_pg_objects(kbr_pg *s, const char *sql, const kbr_pg_params *p, const kbr_col_spec *cols,
                       size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    json_t *arr = NULL, *item = NULL;

    *out = NULL;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (int r = 0; r < PQntuples(res); r++) {
        KBR_GUARD(row_object(res, r, cols, n, &item));
        KBR_ENSURE(json_array_append_new(arr, item) == 0, KBR_ERR_NOMEM);
        item = NULL;
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    PQclear(res);
    return err;
}

kbr_err kbr_pg_object(kbr_pg *s, const char *sql, const kbr_pg_params *p, const kbr_col_spec *cols,
                      size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    *out = NULL;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    KBR_ENSURE(PQntuples(res) > 0, KBR_ERR_NOT_FOUND);
    KBR_GUARD(row_object(res, 0, cols, n, out));
out:
    PQclear(res);
    return err;
}

/* ---- connection and schema ---- */

/* The URI with its password shown as ***, for messages: the one in user:password@ and the
 * value of each password= parameter. */
char *kbr_pg_where_of(const char *uri)
{
    const char *scheme_end = strstr(uri, "://"), *query = strchr(uri, '?'), *p = uri;
    const char *authority_end, *at, *colon;
    size_t n = strlen(uri);
    /* each password= (10 bytes or more) and the user's password grow by 3 bytes at most */
    char *out = malloc(2 * n + 4), *o = out;

    if (out == NULL)
        return NULL;
    if (scheme_end != NULL) {
        authority_end = scheme_end + 3 + strcspn(scheme_end + 3, "/?");
        at = memrchr(scheme_end + 3, '@', (size_t)(authority_end - scheme_end - 3));
        colon = at != NULL ? memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)) : NULL;
        if (colon != NULL) {
            memcpy(o, uri, (size_t)(colon - uri + 1));
            o += colon - uri + 1;
            memcpy(o, "***", 3);
            o += 3;
            p = at;
        }
    }
    while (*p != '\0') {
        bool param = query != NULL && p > query && (p[-1] == '?' || p[-1] == '&');
        if (param && strncmp(p, "password=", 9) == 0) {
            memcpy(o, "password=***", 12);
            o += 12;
            p += 9 + strcspn(p + 9, "&");
        } else
            *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static kbr_err fail_conn(kbr_pg *s, kbr_err err, kbr_msg *msg, const char *what)
{
    const char *why = s->conn != NULL ? PQerrorMessage(s->conn) : "out of memory";
    size_t n = strlen(why);

    while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
        n--;
    return kbr_fail(msg, err, "store %s: %s: %.*s", s->where, what, (int)n, why);
}

static kbr_err simple(kbr_pg *s, const char *sql, kbr_msg *msg, const char *what)
{
    PGresult *res = PQexec(s->conn, sql);
    kbr_err err = kbr_pg_result_err(res);

    PQclear(res);
    if (err != KBR_OK)
        return fail_conn(s, err == KBR_ERR_INTERNAL ? KBR_ERR_STORE : err, msg, what);
    return KBR_OK;
}

/* The version of the store in the connection's current schema, 0 when it has none. */
static kbr_err schema_version(kbr_pg *s, int64_t *version, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    const char *v;

    *version = 0;
    res =
        PQexec(s->conn, "SELECT to_regclass(quote_ident(current_schema()) || '.meta') IS NOT NULL");
    KBR_ENSURE(kbr_pg_result_err(res) == KBR_OK && PQntuples(res) == 1,
               fail_conn(s, KBR_ERR_STORE, msg, "cannot read the schema"));
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        goto out;
    PQclear(res);
    res = PQexec(s->conn, "SELECT coalesce(max(schema_version), 0) FROM meta");
    KBR_ENSURE(kbr_pg_result_err(res) == KBR_OK && PQntuples(res) == 1,
               fail_conn(s, KBR_ERR_STORE, msg, "cannot read the schema version"));
    v = kbr_pg_value(res, 0, 0);
    *version = v != NULL ? strtoll(v, NULL, 10) : 0;
out:
    PQclear(res);
    return err;
}

/* components.purl_key of the rows an older schema recorded, from kbr_store_purl_key, as the
 * firmware.sign effect fills it for a new row (SQLite's step does this with kbr_purl_key in
 * SQL).  In the schema step's transaction. */
static kbr_err fill_purl_keys(kbr_pg *s, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    char *key = NULL;

    KBR_ENSURE(kbr_pg_exec(s,
                           "SELECT DISTINCT purl FROM components"
                           " WHERE purl IS NOT NULL AND purl_key IS NULL",
                           NULL, &res) == KBR_OK,
               fail_conn(s, KBR_ERR_STORE, msg, "cannot read the components"));
    for (int r = 0; r < PQntuples(res); r++) {
        kbr_pg_params p = {.n = 0};

        KBR_GUARD(kbr_store_purl_key(kbr_pg_value(res, r, 0), &key));
        if (key == NULL)
            continue;
        kbr_pg_text(&p, key);
        kbr_pg_text(&p, kbr_pg_value(res, r, 0));
        KBR_ENSURE(kbr_pg_run(s, "UPDATE components SET purl_key = $1 WHERE purl = $2", &p, NULL) ==
                       KBR_OK,
                   fail_conn(s, KBR_ERR_STORE, msg, "cannot record the components' packages"));
        free(key);
        key = NULL;
    }
out:
    free(key);
    PQclear(res);
    return err;
}

/* Two brokers starting on an empty database at once: the advisory lock makes one create
 * the schema and the other find it.  A new store is created at version 6 (pg_schema.sql) and
 * taken through the later steps, as a store an older broker wrote is. */
static kbr_err schema_create(kbr_pg *s, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int64_t version = 0;
    bool in_tx = false;

    KBR_GUARD(schema_version(s, &version, msg));
    if (version == SCHEMA_VERSION)
        goto out;
    KBR_GUARD(simple(s, "BEGIN", msg, "cannot begin"));
    in_tx = true;
    KBR_GUARD(simple(s,
                     "SELECT pg_advisory_xact_lock(hashtext('keybroker schema '"
                     " || coalesce(current_schema(), '')))",
                     msg, "cannot lock the schema"));
    KBR_GUARD(schema_version(s, &version, msg));
    KBR_ENSURE(version <= SCHEMA_VERSION,
               kbr_fail(msg, KBR_ERR_STORE,
                        "store %s: schema version %lld is newer than this broker's (%d)", s->where,
                        (long long)version, SCHEMA_VERSION));
    /* the whole schema as of version 6, then each later step as store/sql/ has it */
    if (version == 0) {
        KBR_GUARD(simple(s, kbr_sql_pg_schema, msg, "cannot create the schema"));
        version = 6;
    }
    /* Each later version is one file of store/pg/, applied in this transaction. */
    if (version < 7)
        KBR_GUARD(simple(s, kbr_sql_pg_v7_audit, msg, "cannot take the schema to version 7"));
    if (version < 8)
        KBR_GUARD(simple(s, kbr_sql_pg_v8_deliver, msg, "cannot add schema version 8"));
    if (version < 9) {
        KBR_GUARD(simple(s, kbr_sql_pg_v9_cra, msg, "cannot take the schema to version 9"));
        KBR_GUARD(fill_purl_keys(s, msg));
    }
    if (version < 10)
        KBR_GUARD(simple(s, kbr_sql_pg_v10_revoked, msg, "cannot take the schema to version 10"));
    KBR_GUARD(simple(s, "COMMIT", msg, "cannot commit the schema"));
    in_tx = false;
out:
    if (in_tx) {
        PGresult *res = PQexec(s->conn, "ROLLBACK");
        PQclear(res);
    }
    return err;
}

static void pg_close(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;

    if (s == NULL)
        return;
    PQfinish(s->conn);
    free(s->conninfo);
    free(s->where);
    free(s);
}

/* A commit must be durable on the server before its answer leaves: synchronous_commit is
 * never off for the broker, whatever the database's default. */
static kbr_err pg_connect(const char *scheme, const char *location, kbr_pg **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_pg *s = NULL;

    *out = NULL;
    KBR_ENSURE(strncmp(location, "//", 2) == 0,
               kbr_fail(msg, KBR_ERR_CONFIG,
                        "store: want a libpq URI, %s://[user@]host[:port]/database[?...]", scheme));
    s = calloc(1, sizeof(*s));
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->base.ops = strcmp(scheme, "postgres") == 0 ? &kbr_store_pg_alt_ops : &kbr_store_pg_ops;
    KBR_ENSURE(asprintf(&s->conninfo, "%s:%s", scheme, location) > 0, KBR_ERR_NOMEM);
    s->where = kbr_pg_where_of(s->conninfo);
    KBR_ENSURE(s->where != NULL, KBR_ERR_NOMEM);
    s->conn = PQconnectdb(s->conninfo);
    KBR_ENSURE(s->conn != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(PQstatus(s->conn) == CONNECTION_OK,
               fail_conn(s, KBR_ERR_STORE, msg, "cannot connect to PostgreSQL"));
    KBR_ENSURE(PQserverVersion(s->conn) >= 120000,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: PostgreSQL %d is too old (12 or later)",
                        s->where, PQserverVersion(s->conn) / 10000));
    KBR_ENSURE(PQsetClientEncoding(s->conn, "UTF8") == 0,
               fail_conn(s, KBR_ERR_STORE, msg, "cannot use UTF-8"));
    KBR_GUARD(simple(s, "SET synchronous_commit = on", msg, "cannot set synchronous_commit"));
    *out = s;
    s = NULL;
out:
    pg_close((kbr_store *)s);
    return err;
}

static kbr_err pg_open_scheme(const char *scheme, const char *location, kbr_store **out,
                              kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_pg *s = NULL;

    *out = NULL;
    KBR_GUARD(pg_connect(scheme, location, &s, msg));
    KBR_GUARD(schema_create(s, msg));
    *out = &s->base;
    s = NULL;
out:
    pg_close((kbr_store *)s);
    return err;
}

/* The database must be reachable and hold a store in its current schema: a mistyped
 * database, user or search_path never becomes an empty deployment (only --init, through
 * kbr_store_open, creates the schema). */
static kbr_err pg_exists_scheme(const char *scheme, const char *location, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_pg *s = NULL;
    int64_t version = 0;

    KBR_GUARD(pg_connect(scheme, location, &s, msg));
    KBR_GUARD(schema_version(s, &version, msg));
    KBR_ENSURE(version > 0,
               kbr_fail(msg, KBR_ERR_NOT_FOUND,
                        "store %s: the database holds no keybroker store in its current schema "
                        "(search_path); only keybrokerd --init creates one",
                        s->where));
out:
    pg_close((kbr_store *)s);
    return err;
}

static kbr_err pg_exists(const char *location, kbr_msg *msg)
{
    return pg_exists_scheme("postgresql", location, msg);
}

static kbr_err pg_exists_alt(const char *location, kbr_msg *msg)
{
    return pg_exists_scheme("postgres", location, msg);
}

/* --check: a session whose every transaction is read-only, so nothing it runs can change
 * the store; several brokers serve a PostgreSQL store at once, so no process "serves" it. */
static kbr_err pg_open_readonly_scheme(const char *scheme, const char *location, kbr_store **out,
                                       kbr_store_info *info, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_pg *s = NULL;
    int64_t version = 0;

    *out = NULL;
    info->current_version = SCHEMA_VERSION;
    info->served_by = 0;
    KBR_GUARD(pg_connect(scheme, location, &s, msg));
    KBR_GUARD(simple(s, "SET default_transaction_read_only = on", msg,
                     "cannot make the session read-only"));
    /* what it reads is what every session reads: a table with row security that would show
     * this session other rows is an error, not a filter; and a lock held against it is an
     * error after a minute, not a check that never ends */
    KBR_GUARD(simple(s, "SET row_security = off", msg, "cannot turn row security off"));
    KBR_GUARD(simple(s, "SET lock_timeout = '60s'", msg, "cannot set a lock timeout"));
    KBR_GUARD(schema_version(s, &version, msg));
    KBR_ENSURE(version > 0, kbr_fail(msg, KBR_ERR_NOT_FOUND,
                                     "store %s: the database holds no keybroker store in its "
                                     "current schema (search_path)",
                                     s->where));
    info->schema_version = (int)version;
    s->hold_tables = true;
    *out = &s->base;
    s = NULL;
out:
    pg_close((kbr_store *)s);
    return err;
}

static kbr_err pg_open_readonly(const char *location, kbr_store **out, kbr_store_info *info,
                                kbr_msg *msg)
{
    return pg_open_readonly_scheme("postgresql", location, out, info, msg);
}

static kbr_err pg_open_readonly_alt(const char *location, kbr_store **out, kbr_store_info *info,
                                    kbr_msg *msg)
{
    return pg_open_readonly_scheme("postgres", location, out, info, msg);
}

static kbr_err pg_open(const char *location, kbr_store **out, kbr_msg *msg)
{
    return pg_open_scheme("postgresql", location, out, msg);
}

static kbr_err pg_open_alt(const char *location, kbr_store **out, kbr_msg *msg)
{
    return pg_open_scheme("postgres", location, out, msg);
}

/* Several brokers share one PostgreSQL store by design: there is no process lock. */
static kbr_err pg_lock(const char *location, int *fd, kbr_msg *msg)
{
    (void)location;
    (void)msg;
    *fd = -1;
    return KBR_OK;
}

/* A session advisory lock, keyed by the store's schema: it ends with the session, so a broker
 * that dies or loses its connection hands the checkpoints to another. */
static kbr_err pg_checkpoint_lease(kbr_store *st, bool *held)
{
    kbr_pg *s = (kbr_pg *)st;
    kbr_err err = KBR_OK;
    char *got = NULL;

    *held = false;
    if (PQstatus(s->conn) != CONNECTION_OK)
        s->lease = false; /* the session that held it is gone */
    if (!s->lease) {
        KBR_GUARD(kbr_pg_string(s,
                                "SELECT pg_try_advisory_lock(hashtext('keybroker checkpoints '"
                                " || current_schema()))::text",
                                NULL, &got));
        s->lease = strcmp(got, "true") == 0;
    }
    *held = s->lease;
out:
    free(got);
    return err;
}

static kbr_err pg_writer_mode(kbr_store *st)
{
    (void)st;
    return KBR_OK;
}

/* The server vacuums and checkpoints by itself. */
static kbr_err pg_maintain(kbr_store *st)
{
    (void)st;
    return KBR_OK;
}

/* ---- transactions ---- */

/*
 * Every writer, of every broker on the database, locks writer_lock's row first: the group
 * commits of all of them are one after another, each reads the log's tail after the lock
 * (READ COMMITTED: each statement sees what committed before it), so seq, prev_hash and
 * the tree continue from the last group whoever wrote it.
 */
static kbr_err pg_begin(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;
    kbr_err err = KBR_OK;

    KBR_ENSURE(!s->in_tx, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_pg_run(s, "BEGIN ISOLATION LEVEL READ COMMITTED", NULL, NULL));
    s->in_tx = true;
    err = kbr_pg_run(s, "SELECT 1 FROM writer_lock WHERE id = 1 FOR UPDATE", NULL, NULL);
    if (err != KBR_OK) {
        PGresult *res = PQexec(s->conn, "ROLLBACK");
        PQclear(res);
        s->in_tx = false;
    }
out:
    return err;
}

static kbr_err pg_commit(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;
    kbr_err err = kbr_pg_run(s, "COMMIT", NULL, NULL);

    /* COMMIT ends the transaction even when it fails (it rolls back). */
    if (err == KBR_OK || PQstatus(s->conn) != CONNECTION_OK ||
        PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        s->in_tx = false;
    return err;
}

static void pg_rollback(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;

    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(s->conn, "ROLLBACK");
        PQclear(res);
    }
    s->in_tx = false;
}

/* A transaction an error aborted is no longer one the writer can go on with. */
static bool pg_in_transaction(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;

    return s->in_tx && PQstatus(s->conn) == CONNECTION_OK &&
           PQtransactionStatus(s->conn) == PQTRANS_INTRANS;
}

static kbr_err pg_savepoint(kbr_store *st)
{
    return kbr_pg_run((kbr_pg *)st, "SAVEPOINT kbr_effects", NULL, NULL);
}

static kbr_err pg_release(kbr_store *st)
{
    return kbr_pg_run((kbr_pg *)st, "RELEASE kbr_effects", NULL, NULL);
}

static void pg_rollback_to(kbr_store *st)
{
    kbr_pg *s = (kbr_pg *)st;

    if (PQstatus(s->conn) != CONNECTION_OK || PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    /* Both fail only if the whole transaction is gone, which the writer's rollback then
     * handles. */
    if (kbr_pg_run(s, "ROLLBACK TO kbr_effects", NULL, NULL) == KBR_OK &&
        kbr_pg_run(s, "RELEASE kbr_effects", NULL, NULL) != KBR_OK)
        return;
}

/* ---- the audit table ---- */

static kbr_err pg_audit_insert(kbr_store *st, const kbr_store_audit_row *row)
{
    kbr_pg_params p = {.n = 0};

    kbr_pg_int(&p, row->seq);
    kbr_pg_text(&p, row->entry_json);
    kbr_pg_text(&p, row->hash);
    return kbr_pg_run((kbr_pg *)st, "INSERT INTO audit(seq, entry, hash) VALUES ($1, $2, $3)", &p,
                      NULL);
}

static kbr_err pg_audit_tail(kbr_store *st, int64_t *seq, char hash[65])
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    const char *h;

    *seq = 0;
    memset(hash, '0', 64);
    hash[64] = '\0';
    KBR_GUARD(kbr_pg_exec((kbr_pg *)st, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                          NULL, &res));
    if (PQntuples(res) == 0)
        goto out;
    h = kbr_pg_value(res, 0, 1);
    KBR_ENSURE(h != NULL && strlen(h) == 64, KBR_ERR_STORE);
    memcpy(hash, h, 65);
    *seq = strtoll(kbr_pg_value(res, 0, 0), NULL, 10);
out:
    PQclear(res);
    return err;
}

/* Rows of (seq, entry, hash) to fn; *last is the last seq, *rows how many. */
static kbr_err walk_rows(const PGresult *res, kbr_store_entry_fn fn, void *arg, int64_t *last,
                         int *rows)
{
    kbr_err err = KBR_OK;

    *rows = PQntuples(res);
    for (int r = 0; r < *rows; r++) {
        const char *entry = kbr_pg_value(res, r, 1), *hash = kbr_pg_value(res, r, 2);

        KBR_ENSURE(entry != NULL && hash != NULL && kbr_pg_value(res, r, 0) != NULL, KBR_ERR_STORE);
        *last = strtoll(kbr_pg_value(res, r, 0), NULL, 10);
        KBR_GUARD(fn(*last, entry, hash, arg));
    }
out:
    return err;
}

static kbr_err pg_audit_walk(kbr_store *st, int64_t after, int64_t limit, kbr_store_entry_fn fn,
                             void *arg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    int rows = 0;

    while (limit > 0) {
        kbr_pg_params p = {.n = 0};
        int64_t chunk = limit < WALK_CHUNK ? limit : WALK_CHUNK;

        kbr_pg_int(&p, after);
        kbr_pg_int(&p, chunk);
        KBR_GUARD(kbr_pg_exec((kbr_pg *)st,
                              "SELECT seq, entry, hash FROM audit WHERE seq > $1"
                              " ORDER BY seq LIMIT $2",
                              &p, &res));
        KBR_GUARD(walk_rows(res, fn, arg, &after, &rows));
        PQclear(res);
        res = NULL;
        if (rows < chunk)
            break;
        limit -= rows;
    }
out:
    PQclear(res);
    return err;
}

/* "(column = $N OR column LIKE $N+1 ...)": LIKE with the prefix's own '_' escaped serves a
 * "prefix*" entry from the index (the column is in the C collation); "(false)" for an empty
 * list. */
static kbr_err match_any_sql(FILE *sql, kbr_pg_params *p, char **likes, size_t *nlikes,
                             const char *column, const char *const *patterns, size_t n)
{
    fputs("(", sql);
    if (n == 0)
        fputs("false", sql);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(patterns[i]);
        bool prefix = len > 0 && patterns[i][len - 1] == '*';

        if (p->n == KBR_PG_PARAMS)
            return KBR_ERR_BAD_REQUEST;
        if (prefix) {
            char *like = malloc(2 * len + 2), *w = like;

            if (like == NULL)
                return KBR_ERR_NOMEM;
            for (size_t j = 0; j + 1 < len; j++) {
                if (patterns[i][j] == '_' || patterns[i][j] == '%' || patterns[i][j] == '\\')
                    *w++ = '\\';
                *w++ = patterns[i][j];
            }
            *w++ = '%';
            *w = '\0';
            likes[(*nlikes)++] = like;
            kbr_pg_text(p, like);
        } else {
            kbr_pg_text(p, patterns[i]);
        }
        fprintf(sql, "%s%s %s $%d", i > 0 ? " OR " : "", column, prefix ? "LIKE" : "=", p->n);
    }
    fputs(")", sql);
    return KBR_OK;
}

static kbr_err within_sql(const kbr_audit_scope *scope, kbr_pg_params *p, char **likes,
                          size_t *nlikes, char **text)
{
    kbr_err err = KBR_OK;
    size_t len = 0;
    FILE *sql = open_memstream(text, &len);

    if (sql == NULL)
        return KBR_ERR_NOMEM;
    if (scope->products_limited) {
        fputs("SELECT DISTINCT a.seq, a.entry, a.hash FROM audit_products p"
              " JOIN audit a ON a.seq = p.seq WHERE p.seq > $1 AND ",
              sql);
        err = match_any_sql(sql, p, likes, nlikes, "p.product", scope->products, scope->nproducts);
    } else {
        fputs("SELECT a.seq, a.entry, a.hash FROM audit a WHERE a.seq > $1", sql);
    }
    if (err == KBR_OK && scope->keys_limited) {
        fputs(" AND ", sql);
        err = match_any_sql(sql, p, likes, nlikes, "a.key", scope->keys, scope->nkeys);
    }
    fputs(" ORDER BY a.seq LIMIT $2", sql);
    if (ferror(sql) != 0 && err == KBR_OK)
        err = KBR_ERR_NOMEM;
    if (fclose(sql) != 0 && err == KBR_OK)
        err = KBR_ERR_NOMEM;
    if (err != KBR_OK) {
        free(*text);
        *text = NULL;
    }
    return err;
}

static kbr_err pg_audit_walk_within(kbr_store *st, int64_t after, int64_t limit,
                                    const kbr_audit_scope *scope, kbr_store_entry_fn fn, void *arg)
{
    kbr_err err = KBR_OK;
    kbr_pg_params p = {.n = 0};
    char *likes[KBR_PG_PARAMS] = {0}, *sql = NULL;
    size_t nlikes = 0;
    PGresult *res = NULL;
    int64_t last = after;
    int rows = 0;

    kbr_pg_int(&p, after);
    kbr_pg_int(&p, limit);
    KBR_GUARD(within_sql(scope, &p, likes, &nlikes, &sql));
    /* the shape depends on the scope, so it is not kept prepared */
    KBR_GUARD(exec_with((kbr_pg *)st, sql, &p, false, &res));
    KBR_GUARD(walk_rows(res, fn, arg, &last, &rows));
out:
    PQclear(res);
    free(sql);
    for (size_t i = 0; i < nlikes; i++)
        free(likes[i]);
    return err;
}

/* ---- the audit tree and its checkpoints ---- */

#define H 32

/* bytea's text form is "\x" and hex. */
static kbr_err hash_from(const char *text, bool bytea, unsigned char out[H])
{
    unsigned char *raw = NULL;
    size_t len = 0;
    kbr_err err = KBR_OK;

    KBR_ENSURE(text != NULL, KBR_ERR_STORE);
    if (bytea) {
        KBR_ENSURE(strncmp(text, "\\x", 2) == 0, KBR_ERR_STORE);
        text += 2;
    }
    KBR_ENSURE(kbr_hex_decode(text, &raw, &len) == KBR_OK && len == H, KBR_ERR_STORE);
    memcpy(out, raw, H);
out:
    free(raw);
    return err;
}

static kbr_err pg_merkle_node_get(kbr_store *st, unsigned level, int64_t idx, unsigned char out[H])
{
    kbr_err err = KBR_OK;
    kbr_pg_params p = {.n = 0};
    PGresult *res = NULL;

    if (level == 0) {
        kbr_pg_int(&p, idx + 1);
        KBR_GUARD(kbr_pg_exec((kbr_pg *)st, "SELECT hash FROM audit WHERE seq = $1", &p, &res));
    } else {
        kbr_pg_int(&p, level);
        kbr_pg_int(&p, idx);
        KBR_GUARD(kbr_pg_exec(
            (kbr_pg *)st, "SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2", &p, &res));
    }
    KBR_ENSURE(PQntuples(res) > 0, KBR_ERR_NOT_FOUND);
    KBR_GUARD(hash_from(kbr_pg_value(res, 0, 0), level > 0, out));
out:
    PQclear(res);
    return err;
}

static kbr_err pg_merkle_node_put(kbr_store *st, unsigned level, int64_t idx,
                                  const unsigned char hash[H])
{
    kbr_pg_params p = {.n = 0};

    if (level < 1)
        return KBR_ERR_INTERNAL;
    kbr_pg_int(&p, level);
    kbr_pg_int(&p, idx);
    kbr_pg_bytes(&p, hash, H);
    return kbr_pg_run((kbr_pg *)st,
                      "INSERT INTO merkle_nodes(level, idx, hash) VALUES ($1, $2, $3)", &p, NULL);
}

static kbr_err pg_checkpoint_insert(kbr_store *st, const kbr_fx_checkpoint *c, int64_t seq)
{
    kbr_pg_params p = {.n = 0};
    const char *text[] = {c->root_hash,   c->time,           c->signature_b64, c->origin,
                          c->note,        c->key_id,         c->key_label,     c->public_key_pem,
                          c->next_key_id, c->next_key_label, c->next_key_pem};

    kbr_pg_int(&p, seq);
    kbr_pg_int(&p, c->size);
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        kbr_pg_text(&p, text[i]);
    return kbr_pg_run((kbr_pg *)st,
                      "INSERT INTO checkpoints(audit_seq, size, root_hash, time, signature_b64,"
                      " origin, note, key_id, key_label, public_key_pem, next_key_id,"
                      " next_key_label, next_key_pem)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                      &p, NULL);
}

#define CHECKPOINT_SELECT                                                                          \
    "SELECT size, root_hash, time, signature_b64, audit_seq, origin, note, key_id, key_label,"     \
    " public_key_pem, next_key_id, next_key_label, next_key_pem FROM checkpoints"

/* The one the latest entry recorded, as the SQLite back end has it. */
static kbr_err pg_checkpoint_latest(kbr_store *st, json_t **out)
{
    return kbr_pg_object((kbr_pg *)st, CHECKPOINT_SELECT " ORDER BY audit_seq DESC LIMIT 1", NULL,
                         kbr_row_checkpoint, KBR_NCOLS(kbr_row_checkpoint), out);
}

static kbr_err pg_checkpoint_find(kbr_store *st, const char *signature_b64, bool *found)
{
    kbr_pg_params p = {.n = 0};

    kbr_pg_text(&p, signature_b64);
    return kbr_pg_exists((kbr_pg *)st, "SELECT 1 FROM checkpoints WHERE signature_b64 = $1", &p,
                         found);
}

static kbr_err pg_checkpoint_rotations(kbr_store *st, int64_t seq, json_t **out)
{
    kbr_pg_params p = {.n = 0};

    kbr_pg_int(&p, seq);
    return kbr_pg_objects((kbr_pg *)st,
                          CHECKPOINT_SELECT " WHERE next_key_pem IS NOT NULL AND audit_seq <= $1"
                                            " ORDER BY audit_seq",
                          &p, kbr_row_checkpoint, KBR_NCOLS(kbr_row_checkpoint), out);
}

/* ---- checking a store against its log ---- */

/* keybrokerd --verify-store rebuilds a PostgreSQL store's log into a SQLite scratch store and
 * compares the two (pg_verify.c). */
static kbr_err pg_bulk_mode(kbr_store *st)
{
    (void)st;
    return KBR_OK;
}

static kbr_err pg_scratch_mode(kbr_store *st)
{
    return kbr_pg_run((kbr_pg *)st, "SET synchronous_commit = off", NULL, NULL);
}

static kbr_err pg_effects_from(kbr_store *st, int64_t *seq)
{
    kbr_err err =
        kbr_pg_int64((kbr_pg *)st, "SELECT min(effects_from) FROM log_effects", NULL, seq);

    return err == KBR_ERR_NOT_FOUND ? KBR_ERR_STORE : err;
}

/* What PostgreSQL can say cheaply: every index is valid and ready. */
static kbr_err pg_integrity(kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *bad = NULL;

    err = kbr_pg_string((kbr_pg *)st,
                        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = current_schema()"
                        " AND NOT (i.indisvalid AND i.indisready) LIMIT 1",
                        NULL, &bad);
    if (err == KBR_ERR_NOT_FOUND)
        return KBR_OK;
    if (err == KBR_OK)
        err = kbr_fail(msg, KBR_ERR_CONFLICT, "store %s: index %s is not valid",
                       ((kbr_pg *)st)->where, bad);
    free(bad);
    return err;
}

#define KBR_PG_OPS(SCHEME, OPEN, EXISTS, OPEN_RO)                                                  \
    {                                                                                              \
        .scheme = SCHEME, .open = OPEN, .exists = EXISTS, .open_readonly = OPEN_RO,                \
        .shown = kbr_pg_where_of, .close = pg_close, .lock = pg_lock, .begin = pg_begin,           \
        .commit = pg_commit, .rollback = pg_rollback, .in_transaction = pg_in_transaction,         \
        .savepoint = pg_savepoint, .release = pg_release, .rollback_to = pg_rollback_to,           \
        .writer_mode = pg_writer_mode, .maintain = pg_maintain, .key_create = kbr_pg_key_create,   \
        .shared = true, .token_uses_left = kbr_pg_token_uses_left,                                 \
        .checkpoint_lease = pg_checkpoint_lease, .key_retire = kbr_pg_key_retire,                  \
        .token_issue = kbr_pg_token_issue, .token_revoke = kbr_pg_token_revoke,                    \
        .issuer_current = kbr_pg_issuer_current, .issuer_replace = kbr_pg_issuer_replace,          \
        .issuer_insert = kbr_pg_issuer_insert, .tokens_assign_kid = kbr_pg_tokens_assign_kid,      \
        .issuer_keys = kbr_pg_issuer_keys, .firmware_digest = kbr_pg_firmware_digest,              \
        .firmware_insert = kbr_pg_firmware_insert, .component_insert = kbr_pg_component_insert,    \
        .key_exists = kbr_pg_key_exists, .evidence_seqs = kbr_pg_evidence_seqs,                    \
        .bulk_mode = pg_bulk_mode, .scratch_mode = pg_scratch_mode,                                \
        .effects_from = pg_effects_from, .integrity = pg_integrity, .compare = kbr_pg_compare,     \
        .document_put = kbr_pg_document_put, .document_exists = kbr_pg_document_exists,            \
        .document_get = kbr_pg_document_get, .issuer_chain = kbr_pg_issuer_chain,                  \
        .cert_supersede = kbr_pg_cert_supersede, .cert_insert = kbr_pg_cert_insert,                \
        .batch_create = kbr_pg_batch_create, .batch_claim = kbr_pg_batch_claim,                    \
        .device_insert = kbr_pg_device_insert, .device_exists = kbr_pg_device_exists,              \
        .device_key_set = kbr_pg_device_key_set,                                                   \
        .device_event_insert = kbr_pg_device_event_insert,                                         \
        .debug_challenge_insert = kbr_pg_debug_challenge_insert,                                   \
        .device_firmware_insert = kbr_pg_device_firmware_insert,                                   \
        .device_firmware_current = kbr_pg_device_firmware_current,                                 \
        .device_revoked = kbr_pg_device_revoked, .device_revoke = kbr_pg_device_revoke,            \
        .crl_last_number = kbr_pg_crl_last_number, .crl_insert = kbr_pg_crl_insert,                \
        .crl_revoked = kbr_pg_crl_revoked, .device_revocation = kbr_pg_device_revocation,          \
        .key_delivery_insert = kbr_pg_key_delivery_insert,                                         \
        .device_deliveries = kbr_pg_device_deliveries, .audit_insert = pg_audit_insert,            \
        .audit_tail = pg_audit_tail, .merkle_node_get = pg_merkle_node_get,                        \
        .merkle_node_put = pg_merkle_node_put, .checkpoint_insert = pg_checkpoint_insert,          \
        .checkpoint_latest = pg_checkpoint_latest, .checkpoint_find = pg_checkpoint_find,          \
        .checkpoint_rotations = pg_checkpoint_rotations,                                           \
        .token_revoke_all = kbr_pg_token_revoke_all, .audit_walk = pg_audit_walk,                  \
        .audit_walk_within = pg_audit_walk_within, .key_get = kbr_pg_key_get,                      \
        .key_list = kbr_pg_key_list, .token_list = kbr_pg_token_list,                              \
        .firmware_get = kbr_pg_firmware_get, .firmware_components = kbr_pg_firmware_components,    \
        .batch_get = kbr_pg_batch_get, .batch_list = kbr_pg_batch_list,                            \
        .device_get = kbr_pg_device_get, .device_certificates = kbr_pg_device_certificates,        \
        .device_find = kbr_pg_device_find, .device_by_key = kbr_pg_device_by_key,                  \
        .device_events = kbr_pg_device_events, .devices_known = kbr_pg_devices_known,              \
        .debug_challenge_used = kbr_pg_debug_challenge_used,                                       \
        .device_firmware = kbr_pg_device_firmware, .snapshot_begin = kbr_pg_snapshot_begin,        \
        .snapshot_end = kbr_pg_snapshot_end, .product_relations = kbr_pg_product_relations,        \
        .product_known = kbr_pg_product_known, .live_tokens = kbr_pg_live_tokens,                  \
        .cert_months = kbr_pg_cert_months, .expiring_devices = kbr_pg_expiring_devices,            \
        .key_tokens = kbr_pg_key_tokens, .key_operations = kbr_pg_key_operations,                  \
        .exposure_components = kbr_pg_exposure_components, .build_row = kbr_pg_build_row,          \
        .fleet_batches = kbr_pg_fleet_batches, .build_histories = kbr_pg_build_histories,          \
        .history_batches = kbr_pg_history_batches, .batch_markets = kbr_pg_batch_markets,          \
        .pending_group = kbr_pg_pending_group, .fleet_walk = kbr_pg_fleet_walk,                    \
        .fleet_size = kbr_pg_fleet_size, .product_get = kbr_pg_product_get,                        \
        .product_put = kbr_pg_product_put, .incident_insert = kbr_pg_incident_insert,              \
        .incident_build_insert = kbr_pg_incident_build_insert,                                     \
        .incident_fleet_load = kbr_pg_incident_fleet_load, .incident_get = kbr_pg_incident_get,    \
        .incident_list = kbr_pg_incident_list, .incident_builds = kbr_pg_incident_builds,          \
        .incident_fix = kbr_pg_incident_fix,                                                       \
        .incident_report_insert = kbr_pg_incident_report_insert,                                   \
        .incident_reports = kbr_pg_incident_reports, .incident_series = kbr_pg_incident_series,    \
        .incident_queries = kbr_pg_incident_queries,                                               \
        .evidence_incident_seqs = kbr_pg_evidence_incident_seqs,                                   \
        .firmware_version_exists = kbr_pg_firmware_version_exists,                                 \
    }

const kbr_store_ops kbr_store_pg_ops =
    KBR_PG_OPS("postgresql", pg_open, pg_exists, pg_open_readonly);
const kbr_store_ops kbr_store_pg_alt_ops =
    KBR_PG_OPS("postgres", pg_open_alt, pg_exists_alt, pg_open_readonly_alt);
