/* The synced entity types, learned from the database schema: each row of
 * sync_entity_types names a typed table, and every column of that table
 * beyond the engine's own (id, version, tenant_id, deleted, changed_by,
 * changed_device, changed_at) and the type's server_columns is a field whose kind follows its SQL
 * type: text/varchar(n) -> TEXT, numeric (unconstrained) -> DECIMAL, bigint -> INT, boolean ->
 * BOOL, date -> DATE, text[] -> TEXT_SET, uuid -> REF. Loaded once, before the loop starts;
 * read-only afterwards. */
#ifndef NS_REGISTRY_H
#define NS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "value.h"

/* The tenant of every directory record (sql/009: napsync_directory_tenant()). */
#define NS_DIRECTORY_TENANT "d1ec7000-0000-4000-8000-000000000000"

typedef struct {
    char *name;
    ns_field_type type;
} ns_field_def;

typedef struct {
    char *name;         /* "plan" */
    char *table;        /* "plans" */
    char *tenant_field; /* a REF field holding the tenant; NULL: the record is its own tenant,
                         * or, for a directory type, the directory's */
    bool directory;     /* organisations, people, roles, devices: tenant NS_DIRECTORY_TENANT */
    /* Its primary key is (tenant_id, id), the table being ready to be
     * distributed by its tenant (sql/011, docs/scaling.md); else (id). */
    bool tenant_keyed;
    char *freeze_field; /* with freeze_value: the record is frozen when the field equals it */
    char *freeze_value;
    ns_field_def *fields; /* sorted by name */
    size_t nfields;
    /* Statements generated from the schema (identifiers come from the
     * catalogue and are quoted; every value is a parameter):
     * select_for_update($1 uuid[]) -> id, version, deleted, tenant_id, fields json
     * upsert($1 json array of records), ON CONFLICT on the primary key */
    char *sql_select_for_update;
    char *sql_upsert;
} ns_entity_type;

typedef struct {
    ns_entity_type *types; /* sorted by name */
    size_t ntypes;
    /* The connection's role is a superuser or has BYPASSRLS: row-level
     * security (sql/005) does not apply to what the daemon does. */
    bool rls_bypassed;
} ns_registry;

/* Blocking: runs before the event loop. Returns 0, or -1 with a message. */
__attribute__((warn_unused_result)) int ns_registry_load(const char *conninfo, ns_registry *out,
                                                         char *err, size_t errlen);
void ns_registry_free(ns_registry *r);

const ns_entity_type *ns_registry_find(const ns_registry *r, const char *name);
const ns_field_def *ns_entity_field(const ns_entity_type *t, const char *field);

#endif
