/* The output file of `napsync report -o FILE` and `napsync export -o FILE`
 * (docs/reports.md, docs/import-export.md).
 *
 * FILE is the path as given, relative to the working directory: the CLI
 * runs with its user's rights, so a path with ".." is that user's to
 * choose, and it is written there and nowhere else. Refused: a name with
 * control characters (a line break, a tab, an escape: a mistake or a trick
 * in a script, never a name meant), a name ending in '/', an existing
 * directory or other file that is not a regular file or a symbolic link,
 * and an existing file or link unless forced (--force; a link is then
 * replaced itself, never what it points to). The file appears whole or not
 * at all: it is written beside its final name (FILE.tmp-XXXXXX) and renamed
 * into place once complete; without force the rename does not replace a
 * file that appeared meanwhile (renameat2 RENAME_NOREPLACE). */
#ifndef NS_CLI_OUTFILE_H
#define NS_CLI_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Checks path before anything is computed or fetched. Returns 0, or -1
 * with why (for people; the name shown only if short and printable). */
int ns_outfile_check(const char *path, bool force, char *why, size_t cap);

/* Creates the temporary file beside path, mode 0666 less the umask.
 * Returns its descriptor with *tmp its name (the caller frees it), or -1
 * with why. */
int ns_outfile_open(const char *path, char **tmp, char *why, size_t cap);

/* Puts the complete temporary file tmp (closed, synced) in place of path,
 * checking again what path is now. On failure tmp is removed. Returns 0;
 * -1 with why; -2 with why when path exists and force is not given. */
int ns_outfile_commit(const char *tmp, const char *path, bool force, char *why, size_t cap);

/* The name for messages: path if short and printable, else a note. */
const char *ns_outfile_shown(const char *path);

#endif
