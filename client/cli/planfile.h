/* The napsync plan file: one plan and everything in it, as one JSON
 * document or one CSV table (docs/import-export.md), read by `napsync
 * import` and written by `napsync export`.
 *
 * The CLI has no schema from the server, so the table in planfile.c is the
 * one description of the format: the entity types of a plan, their fields
 * and each field's kind and limits, and which fields name another record
 * of the same plan. It follows sql/003_wps_model.sql; a new column there
 * is a new line there.
 *
 * Reading collects every problem it can find, not only the first: each
 * with where it is (a CSV line, or a JSON path such as
 * $.indicators[3].baseline), the record and the field. Values are checked
 * and made canonical by proto/value.c, as the server checks them; decimals
 * are read from their text, never through a binary float. */
#ifndef NS_PLANFILE_H
#define NS_PLANFILE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "value.h"

/* A file larger than this is refused before it is read. */
#define PF_MAX_FILE_BYTES (64u * 1024u * 1024u)
/* Records of one file. */
#define PF_MAX_RECORDS 100000u
/* Problems kept (and printed) per file; the rest are counted. */
#define PF_MAX_ERRORS 1000u
/* The field every record but the plan carries on the wire: its plan. It
 * is implied in the file (the file's plan). */
#define PF_TENANT_FIELD "plan_id"
#define PF_UUID_SIZE    37

typedef enum {
    PF_JSON,
    PF_CSV,
} pf_format;

typedef struct {
    const char *name;
    ns_kind kind;
    uint32_t max_bytes; /* text: the column's varchar(n); 0: the protocol's default */
    /* A reference to another record of the same plan, which the file must
     * hold: the type it names, or NULL (no reference, or one outside the
     * plan: an organisation, another plan; the server checks those). */
    const char *ref;
    /* A reference whose type is the value of this other field (a
     * comment's subject), or NULL. */
    const char *ref_type_field;
} pf_field;

typedef struct {
    const char *name; /* the entity type: "indicator" */
    const char *key;  /* its key in a JSON file: "indicators" ("plan": one object) */
    const pf_field *fields;
    size_t nfields;
} pf_type;

/* The types in file order: the plan first, then what refers to what. */
size_t pf_ntypes(void);
const pf_type *pf_type_at(size_t i);
/* NULL when there is no such type; *index (may be NULL) gets its place. */
const pf_type *pf_type_find(const char *name, size_t *index);
/* The index of a field of t, or -1. */
int pf_field_index(const pf_type *t, const char *name);
/* "a decimal", "a date (YYYY-MM-DD)", ... for messages. */
const char *pf_kind_phrase(ns_kind k);

/* One record of a file. */
typedef struct {
    size_t type; /* index in pf_type_at */
    char id[PF_UUID_SIZE];
    ns_value *values; /* one per field of its type; null where absent */
    uint32_t line;    /* CSV: the line it starts on */
    uint32_t index;   /* JSON: its index in its array (0 for the plan) */
} pf_record;

/* One problem. */
typedef struct {
    uint32_t line;   /* a CSV line, or the line of a JSON syntax error; 0 if none */
    uint32_t column; /* JSON syntax errors; 0 if none */
    char where[192]; /* JSON: "$.indicators[3].baseline" (the path of the value); "" for CSV */
    char type[32];   /* the record's type, "" if unknown */
    char id[PF_UUID_SIZE]; /* the record's id, "" if unknown */
    char field[64];        /* the field at fault, "" if none */
    char code[32];         /* the server's reject code ("INVALID_ARGUMENT"); "" for the file's */
    char message[600];
} pf_error;

typedef struct {
    pf_format format;
    pf_record *records; /* in file order */
    size_t n, cap;
    pf_error *errors;
    size_t nerrors;     /* kept, at most PF_MAX_ERRORS */
    size_t errors_seen; /* found in all */
    size_t plan;        /* the plan record's index; valid when has_plan */
    bool has_plan;
    bool full; /* more than PF_MAX_RECORDS records (reported once) */
} pf_file;

void pf_file_init(pf_file *f);
void pf_file_free(pf_file *f);

/* Reads a whole file held in memory (len at most PF_MAX_FILE_BYTES) into
 * f (initialised), checking the syntax, every value against its field's
 * kind and limits, unknown types and fields, duplicate ids, the one plan
 * record, and that every reference to a record of the same plan names a
 * record of the file. Returns 0 when it could read as far as the file
 * allows (f->errors_seen says whether the file is good) and -1 when memory
 * ran out. */
__attribute__((warn_unused_result)) int pf_parse(pf_file *f, pf_format fmt, const char *data,
                                                 size_t len);

/* Adds a problem about record r (may be NULL), e.g. the server's verdict:
 * field and code may be NULL or "". The position is the record's (its CSV
 * line, or its JSON path with the field appended). */
__attribute__((format(printf, 5, 6))) void pf_add_error(pf_file *f, const pf_record *r,
                                                        const char *field, const char *code,
                                                        const char *fmt, ...);
/* A record's JSON path ("$.plan", "$.pillars[2]") into out. */
void pf_record_path(const pf_record *r, char *out, size_t cap);

/* Writing a file. Records must come in type order (pf_type_at), each type's
 * by id; a JSON file has an array for each type that has records, and a
 * CSV file one header naming every field of every type, so that the output
 * depends on the records alone. Values are canonical (ns_value); NULL
 * values are left out (JSON) or blank (CSV). */
typedef struct pf_writer pf_writer;

/* NULL when memory runs out. out stays the caller's. */
pf_writer *pf_writer_new(pf_format fmt, FILE *out);
/* Returns 0, or -1 (records out of order, or a write failed: see ferror). */
__attribute__((warn_unused_result)) int pf_writer_record(pf_writer *w, size_t type, const char *id,
                                                         const ns_value *values);
/* Writes what closes the file. Returns 0 or -1. */
__attribute__((warn_unused_result)) int pf_writer_finish(pf_writer *w);
void pf_writer_free(pf_writer *w);

#endif
