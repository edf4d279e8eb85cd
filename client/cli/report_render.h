/* The napsync CLI's rendering of a report (docs/reports.md) as Markdown,
 * CSV or HTML, from the JSON document the server computed.
 *
 * Figures are printed exactly as the server gave them (decimals are
 * strings and stay strings; chart geometry is computed from them with
 * integer arithmetic, never through a binary float). Text from the server
 * is escaped for the format: Markdown table and emphasis characters and
 * HTML in Markdown; every HTML special character in HTML; CSV per RFC 4180
 * (CRLF records, fields with a comma, quote or line break quoted, quotes
 * doubled), with text cells that a spreadsheet would run as a formula
 * (starting with =, +, -, @, tab or CR) prefixed with an apostrophe.
 *
 * HTML is one self-contained page: inline CSS and SVG, a
 * Content-Security-Policy that allows nothing to be fetched, and one
 * inline script that records, on each chart's <svg data-chart>, its
 * rendered size (data-rendered-width, data-rendered-height) and how many of
 * its bars have a non-zero rendered width (data-rendered-bars), and on
 * each bar its rendered width (data-rendered-w): the page's own check that
 * its charts drew, readable from the DOM by a headless browser. Each chart
 * also states what it should draw (data-bars, data-plot-width; each bar's
 * data-value). */
#ifndef NS_CLI_REPORT_RENDER_H
#define NS_CLI_REPORT_RENDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    NS_REPORT_MD,
    NS_REPORT_CSV,
    NS_REPORT_HTML,
} ns_report_format;

/* Width of a chart's plotting area in SVG user units (data-plot-width). */
#define NS_REPORT_PLOT_WIDTH 360

/* Writes report (the server's document, any of the three kinds) to out in
 * fmt. report is read only. Returns 0, or -1 with why in err: a document
 * without a kind this renderer knows. Write errors are left to the
 * caller (ferror). */
int ns_report_render(const json_t *report, ns_report_format fmt, FILE *out, char *err,
                     size_t errlen);

#endif
