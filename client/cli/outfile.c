#define _GNU_SOURCE /* renameat2 and RENAME_NOREPLACE */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest name echoed in a message. */
#define SHOWN_MAX 120

const char *ns_outfile_shown(const char *path)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f || n >= SHOWN_MAX)
            return "(name not shown: too long or not printable)";
    return path;
}

__attribute__((format(printf, 3, 4))) static int say(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* What path is now: 0 nothing, 1 a regular file or a symbolic link (which
 * a rename replaces itself), -1 with why for anything else. */
static int existing(const char *path, char *why, size_t cap)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return say(why, cap, "-o %s: %s", ns_outfile_shown(path), strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return say(why, cap, "-o %s: is a directory; give a file name", ns_outfile_shown(path));
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        return say(why, cap, "-o %s: exists and is not a regular file", ns_outfile_shown(path));
    return 1;
}

int ns_outfile_check(const char *path, bool force, char *why, size_t cap)
{
    if (path == NULL || path[0] == '\0')
        return say(why, cap, "-o: an empty file name");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return say(why, cap,
                       "-o: the file name holds a control character (a line break, a tab, an "
                       "escape...): refused");
    if (path[strlen(path) - 1] == '/')
        return say(why, cap, "-o %s: names a directory; give a file name", ns_outfile_shown(path));
    int e = existing(path, why, cap);
    if (e < 0)
        return -1;
    if (e == 1 && !force)
        return say(why, cap, "-o %s: the file exists; --force replaces it", ns_outfile_shown(path));
    return 0;
}

int ns_outfile_open(const char *path, char **tmp, char *why, size_t cap)
{
    size_t n = strlen(path) + sizeof(".tmp-XXXXXX");
    char *t = malloc(n);
    if (t == NULL)
        return say(why, cap, "out of memory");
    snprintf(t, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(t);
    if (fd < 0) {
        int e = errno;
        free(t);
        return say(why, cap, "-o %s: cannot create a file beside it: %s", ns_outfile_shown(path),
                   strerror(e));
    }
    /* mkstemp makes 0600; a report is as readable as any file the user
     * makes. */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
        int e = errno;
        close(fd);
        unlink(t);
        free(t);
        return say(why, cap, "-o %s: cannot set its permissions: %s", ns_outfile_shown(path),
                   strerror(e));
    }
    *tmp = t;
    return fd;
}

int ns_outfile_commit(const char *tmp, const char *path, bool force, char *why, size_t cap)
{
    int e = 0;
    if (force) {
        /* What is there may have changed since the check: still never a
         * directory or a device. */
        if (existing(path, why, cap) < 0) {
            unlink(tmp);
            return -1;
        }
        if (rename(tmp, path) == 0)
            return 0;
        e = errno;
    } else {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
            return 0;
        e = errno;
        if (e == EINVAL || e == ENOSYS) {
            /* A file system without RENAME_NOREPLACE: a hard link does not
             * replace either. */
            if (link(tmp, path) == 0) {
                unlink(tmp);
                return 0;
            }
            e = errno;
        }
    }
    unlink(tmp);
    if (e == EEXIST) {
        say(why, cap, "-o %s: the file exists (it appeared meanwhile); --force replaces it",
            ns_outfile_shown(path));
        return -2;
    }
    return say(why, cap, "-o %s: cannot put it in place: %s", ns_outfile_shown(path), strerror(e));
}
