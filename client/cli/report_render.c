#include "report_render.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Markdown and HTML share one document structure (headings, paragraphs,
 * tables); CSV is one table per report. */
typedef struct {
    FILE *f;
    ns_report_format fmt;
} out;

#define DASH "—"
/* Room a chart keeps left of the plot for labels, and right of it for the
 * figures, in SVG user units. */
#define LABEL_W 230
#define NOTE_W  190
#define CHART_W (LABEL_W + NS_REPORT_PLOT_WIDTH + NOTE_W)
/* Longest label drawn in a chart (characters); the whole one is the bar's
 * <title>. */
#define LABEL_CHARS 34
#define MAX_SEGS    4

/* The page's style and script. The Content-Security-Policy names their
 * SHA-256, so that nothing else runs or styles the page: change them and
 * the hashes together (the integration test checks both, and Chromium
 * refuses a script whose hash differs). */
static const char page_style[] =
    ":root{--ns-style:1}"
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1a202c;"
    "padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #cbd5e0;padding:0.25em 0.5em;text-align:left;vertical-align:top}"
    "th{background:#edf2f7}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".meta{color:#4a5568}"
    "figure{margin:1em 0 2em}"
    "figcaption{font-weight:600;margin-bottom:0.5em}"
    "svg text{font-size:12px;fill:#1a202c}"
    ".track{fill:#edf2f7}"
    ".bar{fill:#2b6cb0}"
    ".bar.allocated,.bar.on_time,.key.allocated,.key.on_time{fill:#38a169;background:#38a169}"
    ".bar.spent,.bar.late,.key.spent,.key.late{fill:#d69e2e;background:#d69e2e}"
    ".bar.overdue,.key.overdue{fill:#e53e3e;background:#e53e3e}"
    ".bar.pending,.key.pending{fill:#a0aec0;background:#a0aec0}"
    ".key{display:inline-block;width:0.8em;height:0.8em;margin:0 0.3em 0 1em;"
    "background:#2b6cb0}";
#define PAGE_STYLE_SHA256 "sha256-v02siXdRDX/aby8XP25ruVTzo95/wHjTcKkH+9ga448="

static const char page_script[] =
    "(function(){"
    "var c=document.querySelectorAll('svg[data-chart]');"
    "for(var i=0;i<c.length;i++){"
    "var s=c[i],b=s.getBoundingClientRect(),bars=s.querySelectorAll('.bar'),n=0;"
    "for(var j=0;j<bars.length;j++){"
    "var w=bars[j].getBoundingClientRect().width;"
    "bars[j].setAttribute('data-rendered-w',w.toFixed(1));"
    "if(w>0)n++;}"
    "s.setAttribute('data-rendered-width',Math.round(b.width));"
    "s.setAttribute('data-rendered-height',Math.round(b.height));"
    "s.setAttribute('data-rendered-bars',n);}"
    "var st=getComputedStyle(document.body).getPropertyValue('--ns-style').trim();"
    "document.body.setAttribute('data-charts-rendered',c.length);"
    "document.body.setAttribute('data-style-applied',st==='1'?'1':'0');"
    "})();";
#define PAGE_SCRIPT_SHA256 "sha256-Pu+NBUcr0eyEzuaS2v3Z5Mzc2alYEjPPMD0lgbaf360="

/* ---- the document ------------------------------------------------------------ */

static const json_t *get(const json_t *o, const char *k)
{
    return json_is_object(o) ? json_object_get(o, k) : NULL;
}

/* A string member, or NULL when absent, null or not a string. */
static const char *str(const json_t *o, const char *k)
{
    const json_t *v = get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long num(const json_t *o, const char *k)
{
    const json_t *v = get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static const char *or_dash(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : DASH;
}

/* A decimal as the server writes one: -?digits(.digits)? */
static bool is_decimal(const char *s)
{
    if (s == NULL)
        return false;
    if (*s == '-')
        s++;
    size_t i = strspn(s, "0123456789");
    if (i == 0)
        return false;
    if (s[i] == '.') {
        size_t f = strspn(s + i + 1, "0123456789");
        if (f == 0)
            return false;
        i += 1 + f;
    }
    return s[i] == '\0';
}

/* A non-negative decimal times 10^shift, truncated, as an integer (shift
 * may be negative). false when s is not such a decimal or the result
 * passes 10^18. */
static bool dec_scaled(const char *s, int shift, uint64_t *res)
{
    if (!is_decimal(s) || s[0] == '-')
        return false;
    size_t ilen = strspn(s, "0123456789");
    const char *frac = s[ilen] == '.' ? s + ilen + 1 : "";
    size_t flen = strlen(frac);
    long keep = (long)ilen + shift; /* digits of the integer and fraction parts that stay */
    uint64_t v = 0;
    for (long k = 0; k < keep; k++) {
        size_t at = (size_t)k;
        char d = at < ilen ? s[at] : at - ilen < flen ? frac[at - ilen] : '0';
        if (v > UINT64_C(100000000000000000))
            return false;
        v = v * 10 + (uint64_t)(d - '0');
    }
    *res = v;
    return true;
}

/* Digits before the point, leading zeros aside (0 for 0.xyz). */
static int int_digits(const char *s)
{
    while (*s == '0')
        s++;
    return (int)strspn(s, "0123456789");
}

/* width * value / max, in whole SVG units, from the exact decimals: both
 * are scaled so that max keeps 15 significant digits. 0 for a value that
 * is not a non-negative decimal, or a max of 0. */
static int scaled_width(const char *value, const char *max, int width)
{
    if (!is_decimal(max) || max[0] == '-')
        return 0;
    int shift = 15 - int_digits(max);
    uint64_t v = 0, m = 0;
    if (!dec_scaled(value, shift, &v) || !dec_scaled(max, shift, &m) || m == 0)
        return 0;
    if (v >= m)
        return width;
    return (int)(v * (uint64_t)width / m);
}

/* Whether decimal a is above decimal b (both non-negative). */
static bool dec_above(const char *a, const char *b)
{
    if (!is_decimal(a) || a[0] == '-')
        return false;
    if (!is_decimal(b) || b[0] == '-')
        return true;
    int da = int_digits(a), db = int_digits(b);
    int shift = 15 - (da > db ? da : db);
    uint64_t x = 0, y = 0;
    return dec_scaled(a, shift, &x) && dec_scaled(b, shift, &y) && x > y;
}

/* ---- cells -------------------------------------------------------------------- */

/* The strings made for one row (or one chart) of a report, freed together. */
typedef struct {
    char **c;
    size_t n, cap;
} row;

/* A formatted cell owned by r ("" when memory is short: a report with a
 * blank cell beats none). */
__attribute__((format(printf, 2, 3))) static const char *cellf(row *r, const char *fmt, ...)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        char **c = realloc(r->c, cap * sizeof(*c));
        if (c == NULL)
            return "";
        r->c = c;
        r->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s == NULL)
        return "";
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->c[r->n++] = s;
    return s;
}

static void row_free(row *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->c[i]);
    free(r->c);
    memset(r, 0, sizeof(*r));
}

static const char *count(row *r, long long v)
{
    return cellf(r, "%lld", v);
}

static const char *pct(row *r, const char *p)
{
    return p ? cellf(r, "%s %%", p) : DASH;
}

static const char *period(row *r, const json_t *o)
{
    const char *a = str(o, "period_start"), *b = str(o, "period_end");
    return a && b ? cellf(r, "%s – %s", a, b) : DASH;
}

/* A report value: its number, else its text. */
static const char *value_of(const json_t *v)
{
    const char *n = str(v, "value");
    return n ? n : str(v, "value_text");
}

/* ---- escaping ------------------------------------------------------------------- */

/* The characters both Markdown and HTML take as markup, as entities.
 * Returns whether c was one. */
static bool put_entity(FILE *f, unsigned char c)
{
    const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : NULL;
    if (e != NULL)
        fputs(e, f);
    return e != NULL;
}

static void put_md(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (put_entity(f, *p))
            continue;
        switch (*p) {
        case '\\':
        case '`':
        case '*':
        case '_':
        case '[':
        case ']':
        case '|':
        case '#':
            fputc('\\', f);
            fputc(*p, f);
            break;
        case '\n':
        case '\r':
        case '\t':
            fputc(' ', f);
            break;
        default:
            if (*p >= 0x20 && *p != 0x7f)
                fputc(*p, f);
        }
    }
}

static void put_html(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (put_entity(f, *p))
            continue;
        switch (*p) {
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            if (*p >= 0x20 && *p != 0x7f)
                fputc(*p, f);
            else if (*p == '\n' || *p == '\t')
                fputc(' ', f);
        }
    }
}

/* One CSV field (RFC 4180). Text that a spreadsheet would evaluate gets an
 * apostrophe in front; decimals and counts go as they are. */
static void put_csv(FILE *f, const char *s)
{
    if (s == NULL)
        return;
    bool formula = !is_decimal(s) && strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0';
    bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        fputc('"', f);
    if (formula)
        fputc('\'', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    if (quote)
        fputc('"', f);
}

static void csv_record(FILE *f, const char *const *cells, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        put_csv(f, cells[i]);
    }
    fputs("\r\n", f);
}

/* ---- Markdown and HTML ------------------------------------------------------------- */

static void text(out *o, const char *s)
{
    if (o->fmt == NS_REPORT_HTML)
        put_html(o->f, s);
    else
        put_md(o->f, s);
}

static void heading(out *o, int level, const char *s)
{
    if (o->fmt == NS_REPORT_HTML) {
        fprintf(o->f, "<h%d>", level);
        put_html(o->f, s);
        fprintf(o->f, "</h%d>\n", level);
        return;
    }
    for (int i = 0; i < level; i++)
        fputc('#', o->f);
    fputc(' ', o->f);
    put_md(o->f, s);
    fputs("\n\n", o->f);
}

__attribute__((format(printf, 2, 3))) static void para(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s != NULL) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (o->fmt == NS_REPORT_HTML)
        fputs("<p class=\"meta\">", o->f);
    text(o, s ? s : "");
    fputs(o->fmt == NS_REPORT_HTML ? "</p>\n" : "\n\n", o->f);
    free(s);
}

static void table_begin(out *o, const char *const *hdr, size_t n)
{
    if (o->fmt == NS_REPORT_HTML) {
        fputs("<table><thead><tr>", o->f);
        for (size_t i = 0; i < n; i++) {
            fputs("<th>", o->f);
            put_html(o->f, hdr[i]);
            fputs("</th>", o->f);
        }
        fputs("</tr></thead><tbody>\n", o->f);
        return;
    }
    fputc('|', o->f);
    for (size_t i = 0; i < n; i++) {
        fputc(' ', o->f);
        put_md(o->f, hdr[i]);
        fputs(" |", o->f);
    }
    fputs("\n|", o->f);
    for (size_t i = 0; i < n; i++)
        fputs(" --- |", o->f);
    fputc('\n', o->f);
}

/* A number, or a number and " %": right-aligned in HTML tables. */
static bool is_figure(const char *c)
{
    size_t n = strlen(c);
    if (n > 2 && strcmp(c + n - 2, " %") == 0) {
        char buf[64];
        if (n - 2 >= sizeof(buf))
            return false;
        memcpy(buf, c, n - 2);
        buf[n - 2] = '\0';
        return is_decimal(buf);
    }
    return is_decimal(c);
}

static void table_row(out *o, const char *const *cells, size_t n)
{
    if (o->fmt == NS_REPORT_HTML) {
        fputs("<tr>", o->f);
        for (size_t i = 0; i < n; i++) {
            const char *c = cells[i] ? cells[i] : "";
            fputs(is_figure(c) ? "<td class=\"n\">" : "<td>", o->f);
            put_html(o->f, c);
            fputs("</td>", o->f);
        }
        fputs("</tr>\n", o->f);
        return;
    }
    fputc('|', o->f);
    for (size_t i = 0; i < n; i++) {
        fputc(' ', o->f);
        put_md(o->f, cells[i] ? cells[i] : "");
        fputs(" |", o->f);
    }
    fputc('\n', o->f);
}

static void table_end(out *o)
{
    fputs(o->fmt == NS_REPORT_HTML ? "</tbody></table>\n" : "\n", o->f);
}

#define N(a)        (sizeof(a) / sizeof((a)[0]))
#define TABLE(o, h) table_begin((o), (h), N(h))
#define ROW(o, ...)                                                                                \
    table_row((o), (const char *const[]){__VA_ARGS__}, N(((const char *[]){__VA_ARGS__})))
#define CSV(f, ...)                                                                                \
    csv_record((f), (const char *const[]){__VA_ARGS__}, N(((const char *[]){__VA_ARGS__})))

/* ---- charts (HTML) ------------------------------------------------------------------ */

typedef struct {
    const char *cls;   /* after "bar " */
    const char *value; /* data-value: the exact figure */
    int width;         /* 0..NS_REPORT_PLOT_WIDTH */
} seg;

typedef struct {
    const char *label;
    const char *note; /* after the bars */
    seg segs[MAX_SEGS];
    int nsegs;
    bool stacked; /* side by side on one line; else one line each */
} chart_row;

static int row_height(const chart_row *r)
{
    return r->stacked || r->nsegs <= 1 ? 26 : r->nsegs * 14 + 12;
}

/* A label cut to LABEL_CHARS characters (UTF-8 aware) into buf. */
static const char *short_label(const char *s, char *buf, size_t cap)
{
    size_t chars = 0, i = 0;
    while (s[i] && chars < LABEL_CHARS && i + 4 < cap) {
        size_t n = 1;
        while ((s[i + n] & 0xc0) == 0x80)
            n++;
        i += n;
        chars++;
    }
    if (s[i] == '\0')
        return s;
    memcpy(buf, s, i);
    snprintf(buf + i, cap - i, "…");
    return buf;
}

static void chart(out *o, const char *id, const char *caption, const char *legend,
                  const chart_row *rows, size_t n)
{
    int height = 8, bars = 0;
    for (size_t i = 0; i < n; i++) {
        height += row_height(&rows[i]);
        bars += rows[i].nsegs;
    }
    if (n == 0)
        height = 30;
    FILE *f = o->f;
    fputs("<figure><figcaption>", f);
    put_html(f, caption);
    fputs("</figcaption>\n", f);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" data-chart=\"%s\" data-bars=\"%d\" "
            "data-plot-width=\"%d\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
            "aria-label=\"",
            id, bars, NS_REPORT_PLOT_WIDTH, CHART_W, height, CHART_W, height);
    put_html(f, caption);
    fputs("\">\n", f);
    if (n == 0)
        fputs("<text x=\"0\" y=\"20\">nothing to show</text>\n", f);
    int y = 4;
    for (size_t i = 0; i < n; i++) {
        const chart_row *r = &rows[i];
        int h = row_height(r);
        char buf[LABEL_CHARS * 4 + 8];
        fprintf(f, "<g><text x=\"0\" y=\"%d\">", y + 16);
        put_html(f, short_label(r->label, buf, sizeof(buf)));
        fputs("<title>", f);
        put_html(f, r->label);
        fputs("</title></text>", f);
        fprintf(f, "<rect class=\"track\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", LABEL_W,
                y + 2, NS_REPORT_PLOT_WIDTH, h - 8);
        int x = LABEL_W;
        for (int k = 0; k < r->nsegs; k++) {
            const seg *s = &r->segs[k];
            int by = r->stacked ? y + 4 : y + 4 + k * 14;
            int bh = r->stacked || r->nsegs <= 1 ? 16 : 11;
            fprintf(f, "<rect class=\"bar %s\" data-value=\"", s->cls);
            put_html(f, s->value);
            fprintf(f, "\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"><title>", x, by, s->width,
                    bh);
            put_html(f, r->label);
            fputs(": ", f);
            put_html(f, s->cls);
            fputc(' ', f);
            put_html(f, s->value);
            fputs("</title></rect>", f);
            if (r->stacked)
                x += s->width;
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">", LABEL_W + NS_REPORT_PLOT_WIDTH + 8, y + 16);
        put_html(f, r->note ? r->note : "");
        fputs("</text></g>\n", f);
        y += h;
    }
    fputs("</svg>\n", f);
    if (legend)
        fprintf(f, "<p class=\"meta\">%s</p>\n", legend); /* a literal of this file */
    fputs("</figure>\n", f);
}

static void html_begin(out *o, const char *title)
{
    fprintf(o->f,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src '%s'; script-src '%s'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
            PAGE_STYLE_SHA256, PAGE_SCRIPT_SHA256);
    put_html(o->f, title);
    fprintf(o->f, "</title>\n<style>%s</style>\n</head>\n<body>\n", page_style);
}

static void html_end(out *o)
{
    fprintf(o->f, "<script>%s</script>\n</body>\n</html>\n", page_script);
}

/* ---- progress ------------------------------------------------------------------------ */

static const char *org_name(const json_t *o)
{
    return str(o, "name");
}

static void indicator_table(out *o, const json_t *inds)
{
    static const char *const hdr[] = {"Code",     "Indicator",   "Responsible",
                                      "Baseline", "Target",      "Latest approved value",
                                      "Period",   "% of target", "Trend"};
    TABLE(o, hdr);
    size_t i;
    const json_t *x;
    json_array_foreach(inds, i, x)
    {
        row r = {0};
        const json_t *l = get(x, "latest");
        const char *target = str(x, "target");
        const char *src = str(x, "target_source");
        const char *trend = str(x, "trend");
        ROW(o, or_dash(str(x, "code")), or_dash(str(x, "title")),
            or_dash(org_name(get(x, "responsible"))), or_dash(str(x, "baseline")),
            target ? cellf(&r, "%s (%s)", target,
                           src && strcmp(src, "year") == 0 ? "this year" : "end of plan")
                   : DASH,
            or_dash(value_of(l)), period(&r, l), pct(&r, str(x, "pct_of_target")),
            trend ? cellf(&r, "%s (%s)", trend, or_dash(str(x, "change"))) : DASH);
        row_free(&r);
    }
    table_end(o);
}

static const char *status_word(const char *s)
{
    if (s == NULL)
        return DASH;
    if (strcmp(s, "on_time") == 0)
        return "on time";
    if (strcmp(s, "pending") == 0)
        return "not yet due";
    return s;
}

static const char *funding_word(const char *s)
{
    if (s == NULL)
        return DASH;
    if (strcmp(s, "national_budget") == 0)
        return "national budget";
    if (strcmp(s, "donor_basket_fund") == 0)
        return "donor basket fund";
    if (strcmp(s, "other_fund") == 0)
        return "other fund";
    return s;
}

static void money_table(out *o, const json_t *lines, const char *first, bool by_source)
{
    const char *hdr[] = {first, "Currency", "Lines", "Costed", "Allocated", "Disbursed", "Spent"};
    table_begin(o, by_source || first ? hdr : hdr + 1, by_source || first ? 7 : 6);
    size_t i;
    const json_t *x;
    json_array_foreach(lines, i, x)
    {
        row r = {0};
        const char *cells[] = {by_source ? funding_word(str(x, "funding_source"))
                                         : or_dash(org_name(get(x, "organisation"))),
                               or_dash(str(x, "currency")),
                               count(&r, num(x, "lines")),
                               or_dash(str(x, "costed")),
                               or_dash(str(x, "allocated")),
                               or_dash(str(x, "disbursed")),
                               or_dash(str(x, "spent"))};
        bool first_col = by_source || first;
        table_row(o, first_col ? cells : cells + 1, first_col ? 7 : 6);
        row_free(&r);
    }
    table_end(o);
}

/* The three charts of the progress report. */
static void progress_charts(out *o, const json_t *rep)
{
    const json_t *pillars = get(rep, "pillars");
    size_t n = json_array_size(pillars), i;
    chart_row *rows = calloc(n ? n : 1, sizeof(*rows));
    row r = {0};
    const json_t *x;
    if (rows) {
        json_array_foreach(pillars, i, x)
        {
            const char *p = str(x, "progress_pct");
            uint64_t tenths = 0;
            rows[i].label = or_dash(str(x, "name"));
            rows[i].note = p ? cellf(&r, "%s %%", p) : "no value yet";
            if (p != NULL) {
                bool ok = dec_scaled(p, 1, &tenths);
                tenths = ok ? (tenths > 1000 ? 1000 : tenths) : 0;
                rows[i].segs[0] = (seg){"progress", p, (int)(tenths * NS_REPORT_PLOT_WIDTH / 1000)};
                rows[i].nsegs = 1;
            }
        }
        chart(o, "pillar-progress", "Progress per pillar (average % of target, capped at 100)",
              NULL, rows, n);
    }
    free(rows);
    row_free(&r);

    /* Budget per funding source: costed, allocated and spent, each scaled
     * against the largest amount of the same currency. */
    const json_t *src = get(get(rep, "budget"), "by_funding_source");
    n = json_array_size(src);
    rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows) {
        json_array_foreach(src, i, x)
        {
            const char *cur = str(x, "currency");
            const char *max = "0";
            size_t j;
            const json_t *y;
            json_array_foreach(src, j, y)
            {
                const char *yc = str(y, "currency");
                if (cur == NULL || yc == NULL || strcmp(cur, yc) != 0)
                    continue;
                static const char *const amounts[] = {"costed", "allocated", "spent"};
                for (size_t k = 0; k < N(amounts); k++)
                    if (dec_above(str(y, amounts[k]), max))
                        max = str(y, amounts[k]);
            }
            static const char *const kinds[] = {"costed", "allocated", "spent"};
            rows[i].label =
                cellf(&r, "%s (%s)", funding_word(str(x, "funding_source")), or_dash(cur));
            rows[i].note = cellf(&r, "%s / %s / %s", or_dash(str(x, "costed")),
                                 or_dash(str(x, "allocated")), or_dash(str(x, "spent")));
            for (size_t k = 0; k < N(kinds); k++) {
                const char *v = str(x, kinds[k]);
                rows[i].segs[k] =
                    (seg){kinds[k], v ? v : "", v ? scaled_width(v, max, NS_REPORT_PLOT_WIDTH) : 0};
            }
            rows[i].nsegs = 3;
        }
        chart(o, "budget-by-source",
              "Budget per funding source: costed, allocated and spent (scaled per currency)",
              "<span class=\"key costed\"></span>costed<span class=\"key allocated\"></span>"
              "allocated<span class=\"key spent\"></span>spent",
              rows, n);
    }
    free(rows);
    row_free(&r);

    /* On-time reporting per organisation, for the periods of the year. */
    const json_t *orgs = get(rep, "organisations");
    n = json_array_size(orgs);
    rows = calloc(n ? n : 1, sizeof(*rows));
    size_t m = 0;
    if (rows) {
        json_array_foreach(orgs, i, x)
        {
            const json_t *rp = get(x, "reporting");
            long long expected = num(rp, "expected");
            if (expected <= 0)
                continue;
            static const char *const kinds[] = {"on_time", "late", "overdue", "pending"};
            chart_row *cr = &rows[m++];
            cr->label = or_dash(org_name(get(x, "organisation")));
            cr->stacked = true;
            const char *rate = str(rp, "on_time_pct");
            cr->note = cellf(&r, "%lld of %lld on time%s%s%s", num(rp, "on_time"), expected,
                             rate ? " (" : "", rate ? rate : "", rate ? " %)" : "");
            for (size_t k = 0; k < N(kinds); k++) {
                long long c = num(rp, kinds[k]);
                if (c < 0 || c > expected)
                    c = 0;
                cr->segs[k] =
                    (seg){kinds[k], count(&r, c), (int)(c * NS_REPORT_PLOT_WIDTH / expected)};
            }
            cr->nsegs = 4;
        }
        chart(o, "reporting-by-organisation",
              "Reporting per organisation: periods ending in the year, by status",
              "<span class=\"key on_time\"></span>on time<span class=\"key late\"></span>late"
              "<span class=\"key overdue\"></span>overdue<span class=\"key pending\"></span>"
              "not yet due",
              rows, m);
    }
    free(rows);
    row_free(&r);
}

static void render_progress_doc(out *o, const json_t *rep)
{
    const json_t *plan = get(rep, "plan");
    row r = {0};
    long long year = num(rep, "year");
    const char *title =
        cellf(&r, "Annual progress report %lld: %s", year, or_dash(str(plan, "title")));
    if (o->fmt == NS_REPORT_HTML)
        html_begin(o, title);
    heading(o, 1, title);
    para(o,
         "Plan %s (%s, %s), %s to %s, owned by %s. Figures as of %s (generated %s); only "
         "approved values count, a report is due %lld days after its period ends.",
         or_dash(str(plan, "code")), or_dash(str(plan, "kind")), or_dash(str(plan, "status")),
         or_dash(str(plan, "period_start")), or_dash(str(plan, "period_end")),
         or_dash(org_name(get(plan, "owner"))), or_dash(str(rep, "as_of")),
         or_dash(str(rep, "generated_at")), num(rep, "due_days"));

    const json_t *sum = get(rep, "summary");
    const json_t *rp = get(rep, "reporting");
    heading(o, 2, "Summary");
    static const char *const sh[] = {"Measure", "Value"};
    TABLE(o, sh);
    ROW(o, "Indicators", count(&r, num(sum, "indicators")));
    ROW(o, "with an approved value", count(&r, num(sum, "with_value")));
    ROW(o, "with progress towards a target", count(&r, num(sum, "with_progress")));
    ROW(o, "target reached (100 % or more)", count(&r, num(sum, "achieved")));
    ROW(o, "Average progress (% of target, capped at 100)", pct(&r, str(sum, "progress_pct")));
    ROW(o, "Reporting periods ending in the year", count(&r, num(rp, "expected")));
    ROW(o, "reported on time", count(&r, num(rp, "on_time")));
    ROW(o, "reported late", count(&r, num(rp, "late")));
    ROW(o, "overdue", count(&r, num(rp, "overdue")));
    ROW(o, "not yet due", count(&r, num(rp, "pending")));
    ROW(o, "On-time rate (of those due)", pct(&r, str(rp, "on_time_pct")));
    table_end(o);
    row_free(&r);

    if (o->fmt == NS_REPORT_HTML) {
        heading(o, 2, "Charts");
        progress_charts(o, rep);
    }

    heading(o, 2, "Progress by pillar");
    size_t i, j;
    const json_t *p, *ob;
    json_array_foreach(get(rep, "pillars"), i, p)
    {
        const char *pp = str(p, "progress_pct");
        heading(o, 3,
                cellf(&r, "%s%s%s: %s", str(p, "code") ? str(p, "code") : "",
                      str(p, "code") ? " " : "", or_dash(str(p, "name")),
                      pp ? cellf(&r, "%s %% average progress", pp) : "no progress measured yet"));
        para(o, "%lld indicators, %lld with an approved value, %lld with progress, %lld reached.",
             num(p, "indicators"), num(p, "with_value"), num(p, "with_progress"),
             num(p, "achieved"));
        json_array_foreach(get(p, "objectives"), j, ob)
        {
            heading(o, 4,
                    cellf(&r, "%s%s%s", str(ob, "code") ? str(ob, "code") : "",
                          str(ob, "code") ? " " : "", or_dash(str(ob, "title"))));
            indicator_table(o, get(ob, "indicators"));
        }
        row_free(&r);
    }
    if (json_array_size(get(rep, "unassigned_indicators")) > 0) {
        heading(o, 3, "Indicators without an objective");
        indicator_table(o, get(rep, "unassigned_indicators"));
    }

    heading(o, 2, "Organisations");
    static const char *const oh[] = {"Organisation", "Actions led",
                                     "Indicators",   "Expected",
                                     "On time",      "Late",
                                     "Overdue",      "Not yet due",
                                     "On-time rate", "Budget (costed / allocated / spent)"};
    TABLE(o, oh);
    const json_t *x;
    json_array_foreach(get(rep, "organisations"), i, x)
    {
        const json_t *orp = get(x, "reporting");
        char *money = NULL;
        size_t mlen = 0;
        FILE *mf = open_memstream(&money, &mlen);
        const json_t *b;
        json_array_foreach(get(x, "budget"), j, b)
        {
            if (mf)
                fprintf(mf, "%s%s %s / %s / %s", j ? "; " : "", or_dash(str(b, "currency")),
                        or_dash(str(b, "costed")), or_dash(str(b, "allocated")),
                        or_dash(str(b, "spent")));
        }
        if (mf)
            fclose(mf);
        ROW(o, or_dash(org_name(get(x, "organisation"))),
            count(&r, num(get(x, "actions"), "total")), count(&r, num(x, "indicators")),
            count(&r, num(orp, "expected")), count(&r, num(orp, "on_time")),
            count(&r, num(orp, "late")), count(&r, num(orp, "overdue")),
            count(&r, num(orp, "pending")), pct(&r, str(orp, "on_time_pct")), or_dash(money));
        free(money);
        row_free(&r);
    }
    table_end(o);

    const json_t *bud = get(rep, "budget");
    heading(o, 2, cellf(&r, "Budget %lld", num(bud, "fiscal_year")));
    row_free(&r);
    heading(o, 3, "By funding source");
    money_table(o, get(bud, "by_funding_source"), "Funding source", true);
    heading(o, 3, "By lead organisation");
    money_table(o, get(bud, "by_organisation"), "Organisation", false);
    heading(o, 3, "Totals");
    static const char *const th[] = {"Currency",
                                     "Lines",
                                     "Costed",
                                     "Allocated",
                                     "Disbursed",
                                     "Spent",
                                     "Gender-responsive (costed)"};
    TABLE(o, th);
    json_array_foreach(get(bud, "totals"), i, x)
    {
        ROW(o, or_dash(str(x, "currency")), count(&r, num(x, "lines")), or_dash(str(x, "costed")),
            or_dash(str(x, "allocated")), or_dash(str(x, "disbursed")), or_dash(str(x, "spent")),
            or_dash(str(x, "gender_responsive_costed")));
        row_free(&r);
    }
    table_end(o);
    heading(o, 3, "Whole plan period");
    money_table(o, get(bud, "plan_totals"), NULL, false);

    heading(o, 2, cellf(&r, "Reporting periods ending in %lld", year));
    row_free(&r);
    static const char *const ph[] = {"Indicator", "Responsible", "Period",
                                     "Due",       "Status",      "First submitted"};
    TABLE(o, ph);
    json_array_foreach(get(rp, "periods"), i, x)
    {
        const json_t *ind = get(x, "indicator");
        ROW(o, cellf(&r, "%s %s", or_dash(str(ind, "code")), or_dash(str(ind, "title"))),
            or_dash(org_name(get(x, "organisation"))), period(&r, x), or_dash(str(x, "due")),
            status_word(str(x, "status")), or_dash(str(x, "first_submitted_at")));
        row_free(&r);
    }
    table_end(o);

    heading(o, 2, "Reports overdue");
    if (json_array_size(get(rp, "overdue_reports")) == 0) {
        para(o, "None.");
    } else {
        static const char *const dh[] = {"Indicator", "Responsible", "Period", "Due",
                                         "Days overdue"};
        TABLE(o, dh);
        json_array_foreach(get(rp, "overdue_reports"), i, x)
        {
            const json_t *ind = get(x, "indicator");
            ROW(o, cellf(&r, "%s %s", or_dash(str(ind, "code")), or_dash(str(ind, "title"))),
                or_dash(org_name(get(x, "organisation"))), period(&r, x), or_dash(str(x, "due")),
                count(&r, num(x, "days_overdue")));
            row_free(&r);
        }
        table_end(o);
    }
    if (o->fmt == NS_REPORT_HTML)
        html_end(o);
}

static void render_progress_csv(FILE *f, const json_t *rep)
{
    CSV(f, "section", "pillar", "objective", "code", "name", "organisation", "funding_source",
        "currency", "period_start", "period_end", "due", "status", "baseline", "target",
        "latest_value", "pct_of_target", "trend", "lines", "costed", "allocated", "disbursed",
        "spent", "expected", "on_time", "late", "overdue", "pending", "on_time_pct");
    row r = {0};
    size_t i, j, k;
    const json_t *p, *ob, *x;
    json_array_foreach(get(rep, "pillars"), i, p)
    {
        CSV(f, "pillar", str(p, "name"), "", str(p, "code"), str(p, "name"), "", "", "", "", "", "",
            "", "", "", "", str(p, "progress_pct"), "", "", "", "", "", "", "", "", "", "", "", "");
        json_array_foreach(get(p, "objectives"), j, ob)
        {
            json_array_foreach(get(ob, "indicators"), k, x)
            {
                const json_t *l = get(x, "latest");
                CSV(f, "indicator", str(p, "name"), str(ob, "title"), str(x, "code"),
                    str(x, "title"), org_name(get(x, "responsible")), "", "",
                    str(l, "period_start"), str(l, "period_end"), "", "", str(x, "baseline"),
                    str(x, "target"), value_of(l), str(x, "pct_of_target"), str(x, "trend"), "", "",
                    "", "", "", "", "", "", "", "", "");
            }
        }
    }
    json_array_foreach(get(rep, "unassigned_indicators"), i, x)
    {
        const json_t *l = get(x, "latest");
        CSV(f, "indicator", "", "", str(x, "code"), str(x, "title"),
            org_name(get(x, "responsible")), "", "", str(l, "period_start"), str(l, "period_end"),
            "", "", str(x, "baseline"), str(x, "target"), value_of(l), str(x, "pct_of_target"),
            str(x, "trend"), "", "", "", "", "", "", "", "", "", "", "");
    }
    json_array_foreach(get(rep, "organisations"), i, x)
    {
        const json_t *rp = get(x, "reporting");
        CSV(f, "organisation", "", "", "", "", org_name(get(x, "organisation")), "", "", "", "", "",
            "", "", "", "", "", "", "", "", "", "", "", count(&r, num(rp, "expected")),
            count(&r, num(rp, "on_time")), count(&r, num(rp, "late")),
            count(&r, num(rp, "overdue")), count(&r, num(rp, "pending")), str(rp, "on_time_pct"));
        row_free(&r);
    }
    const json_t *bud = get(rep, "budget");
    static const char *const parts[] = {"by_funding_source", "by_organisation", "totals",
                                        "plan_totals"};
    static const char *const sections[] = {"budget_source", "budget_organisation", "budget_total",
                                           "budget_plan_total"};
    for (size_t s = 0; s < N(parts); s++) {
        json_array_foreach(get(bud, parts[s]), i, x)
        {
            CSV(f, sections[s], "", "", "", "", org_name(get(x, "organisation")),
                str(x, "funding_source"), str(x, "currency"), "", "", "", "", "", "", "", "", "",
                count(&r, num(x, "lines")), str(x, "costed"), str(x, "allocated"),
                str(x, "disbursed"), str(x, "spent"), "", "", "", "", "", "");
            row_free(&r);
        }
    }
    const json_t *rp = get(rep, "reporting");
    json_array_foreach(get(rp, "periods"), i, x)
    {
        const json_t *ind = get(x, "indicator");
        CSV(f, "reporting", "", "", str(ind, "code"), str(ind, "title"),
            org_name(get(x, "organisation")), "", "", str(x, "period_start"), str(x, "period_end"),
            str(x, "due"), str(x, "status"), "", "", "", "", "", "", "", "", "", "", "", "", "", "",
            "", "");
    }
    json_array_foreach(get(rp, "overdue_reports"), i, x)
    {
        const json_t *ind = get(x, "indicator");
        CSV(f, "overdue", "", "", str(ind, "code"), str(ind, "title"),
            org_name(get(x, "organisation")), "", "", str(x, "period_start"), str(x, "period_end"),
            str(x, "due"), "overdue", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "",
            "");
    }
}

/* ---- region --------------------------------------------------------------------------- */

static const char *member_status_word(const char *s)
{
    if (s == NULL)
        return DASH;
    if (strcmp(s, "not_reported") == 0)
        return "no approved value";
    if (strcmp(s, "not_mapped") == 0)
        return "no mapped indicator";
    return s;
}

static void render_region_doc(out *o, const json_t *rep)
{
    const json_t *region = get(rep, "region");
    row r = {0};
    const char *title = cellf(&r, "Regional report: %s", or_dash(str(region, "name")));
    if (o->fmt == NS_REPORT_HTML)
        html_begin(o, title);
    heading(o, 1, title);
    para(o,
         "Member states' indicators mapped to the regional indicators of the Regional Action "
         "Plans; for each member, its latest approved value. Generated %s.",
         or_dash(str(rep, "generated_at")));
    row_free(&r);
    heading(o, 2, "Member states");
    static const char *const mh[] = {"Country", "Member since", "National Action Plans",
                                     "Regional indicators reported"};
    TABLE(o, mh);
    size_t i, j;
    const json_t *x, *y;
    json_array_foreach(get(rep, "members"), i, x)
    {
        char *naps = NULL;
        size_t nlen = 0;
        FILE *nf = open_memstream(&naps, &nlen);
        json_array_foreach(get(x, "naps"), j, y)
        {
            if (nf)
                fprintf(nf, "%s%s (%s)", j ? "; " : "", or_dash(str(y, "title")),
                        or_dash(str(y, "status")));
        }
        if (nf)
            fclose(nf);
        ROW(o, or_dash(str(x, "country")), or_dash(str(x, "since")), or_dash(naps),
            cellf(&r, "%lld of %lld", num(x, "indicators_reported"), num(x, "indicators_total")));
        free(naps);
        row_free(&r);
    }
    table_end(o);
    if (json_array_size(get(rep, "raps")) == 0)
        para(o, "No Regional Action Plan of this organisation is readable.");
    const json_t *rap, *ind, *agg;
    json_array_foreach(get(rep, "raps"), i, rap)
    {
        const json_t *plan = get(rap, "plan");
        heading(o, 2,
                cellf(&r, "%s (%s to %s, %s)", or_dash(str(plan, "title")),
                      or_dash(str(plan, "period_start")), or_dash(str(plan, "period_end")),
                      or_dash(str(plan, "status"))));
        row_free(&r);
        json_array_foreach(get(rap, "indicators"), j, ind)
        {
            heading(o, 3,
                    cellf(&r, "%s %s", or_dash(str(ind, "code")), or_dash(str(ind, "title"))));
            agg = get(ind, "aggregate");
            char *missing = NULL;
            size_t mlen = 0;
            FILE *mf = open_memstream(&missing, &mlen);
            size_t k;
            json_array_foreach(get(ind, "not_reported"), k, y)
            {
                if (mf && json_is_string(y))
                    fprintf(mf, "%s%s", k ? ", " : "", json_string_value(y));
            }
            if (mf)
                fclose(mf);
            para(o,
                 "Reported by %lld of %lld members (%lld mapped). Sum %s, mean %s, minimum %s, "
                 "maximum %s over %lld values. Not reported: %s.",
                 num(ind, "members_reported"), num(ind, "members_total"),
                 num(ind, "members_mapped"), or_dash(str(agg, "sum")), or_dash(str(agg, "mean")),
                 or_dash(str(agg, "min")), or_dash(str(agg, "max")), num(agg, "n"),
                 missing && missing[0] ? missing : "none");
            free(missing);
            static const char *const ih[] = {"Country", "Status", "Member indicator",
                                             "Latest approved value", "Period"};
            TABLE(o, ih);
            json_array_foreach(get(ind, "members"), k, y)
            {
                const json_t *mi = get(y, "indicator");
                const json_t *l = get(y, "latest");
                ROW(o, or_dash(str(y, "country")), member_status_word(str(y, "status")),
                    json_is_object(mi)
                        ? cellf(&r, "%s %s", or_dash(str(mi, "code")), or_dash(str(mi, "title")))
                        : DASH,
                    or_dash(value_of(l)), period(&r, l));
            }
            table_end(o);
            row_free(&r);
        }
    }
    if (o->fmt == NS_REPORT_HTML)
        html_end(o);
}

static void render_region_csv(FILE *f, const json_t *rep)
{
    CSV(f, "section", "rap", "code", "name", "country", "status", "member_indicator",
        "period_start", "period_end", "value", "members_reported", "members_mapped",
        "members_total", "n", "sum", "mean", "min", "max");
    row r = {0};
    size_t i, j, k;
    const json_t *rap, *ind, *y;
    json_array_foreach(get(rep, "raps"), i, rap)
    {
        const char *rc = str(get(rap, "plan"), "code");
        json_array_foreach(get(rap, "indicators"), j, ind)
        {
            const json_t *agg = get(ind, "aggregate");
            CSV(f, "aggregate", rc, str(ind, "code"), str(ind, "title"), "", "", "", "", "", "",
                count(&r, num(ind, "members_reported")), count(&r, num(ind, "members_mapped")),
                count(&r, num(ind, "members_total")), count(&r, num(agg, "n")), str(agg, "sum"),
                str(agg, "mean"), str(agg, "min"), str(agg, "max"));
            row_free(&r);
            json_array_foreach(get(ind, "members"), k, y)
            {
                const json_t *l = get(y, "latest");
                CSV(f, "member", rc, str(ind, "code"), str(ind, "title"), str(y, "country"),
                    str(y, "status"), str(get(y, "indicator"), "code"), str(l, "period_start"),
                    str(l, "period_end"), value_of(l), "", "", "", "", "", "", "", "");
            }
        }
    }
}

/* ---- coverage ------------------------------------------------------------------------- */

static const char *share(row *r, const json_t *o)
{
    const char *s = str(o, "share_pct");
    return cellf(r, "%lld (%s)", num(o, "plans"), s ? cellf(r, "%s %%", s) : DASH);
}

static void render_coverage_doc(out *o, const json_t *rep)
{
    row r = {0};
    const char *title = "Coverage of adopted National Action Plans";
    if (o->fmt == NS_REPORT_HTML)
        html_begin(o, title);
    heading(o, 1, title);
    long long n = num(rep, "adopted_naps");
    para(o, "Over the %lld adopted National Action Plans this organisation can read. Generated %s.",
         n, or_dash(str(rep, "generated_at")));
    size_t i;
    const json_t *x;
    if (o->fmt == NS_REPORT_HTML) {
        const json_t *qs = get(rep, "questions");
        size_t nq = json_array_size(qs);
        chart_row *rows = calloc(nq ? nq : 1, sizeof(*rows));
        if (rows) {
            json_array_foreach(qs, i, x)
            {
                const char *s = str(x, "share_pct");
                uint64_t tenths = 0;
                rows[i].label = or_dash(str(x, "question"));
                rows[i].note = s ? cellf(&r, "%lld of %lld (%s %%)", num(x, "plans"), n, s) : DASH;
                if (s != NULL && dec_scaled(s, 1, &tenths)) {
                    tenths = tenths > 1000 ? 1000 : tenths;
                    rows[i].segs[0] =
                        (seg){"share", s, (int)(tenths * NS_REPORT_PLOT_WIDTH / 1000)};
                    rows[i].nsegs = 1;
                }
            }
            chart(o, "coverage-questions", "Share of adopted NAPs", NULL, rows, nq);
        }
        free(rows);
        row_free(&r);
    }
    heading(o, 2, "Questions");
    static const char *const qh[] = {"Question", "Plans", "Of", "Share"};
    TABLE(o, qh);
    json_array_foreach(get(rep, "questions"), i, x)
    {
        ROW(o, or_dash(str(x, "question")), count(&r, num(x, "plans")), count(&r, num(x, "of")),
            pct(&r, str(x, "share_pct")));
        row_free(&r);
    }
    table_end(o);
    heading(o, 2, "Thematic tags");
    para(o, "Plans (and share) with an action, an indicator or the plan itself carrying the tag.");
    static const char *const th[] = {"Tag", "Label", "Actions", "Indicators", "Plan", "Any"};
    TABLE(o, th);
    json_array_foreach(get(rep, "tags"), i, x)
    {
        ROW(o, or_dash(str(x, "tag")), or_dash(str(x, "label")), share(&r, get(x, "actions")),
            share(&r, get(x, "indicators")), share(&r, get(x, "plan_tag")),
            share(&r, get(x, "any")));
        row_free(&r);
    }
    table_end(o);
    heading(o, 2, "Plans considered");
    static const char *const ph[] = {"Country", "Code",          "Title",
                                     "Period",  "Costed budget", "Approved values"};
    TABLE(o, ph);
    json_array_foreach(get(rep, "plans"), i, x)
    {
        ROW(o, or_dash(str(x, "country")), or_dash(str(x, "code")), or_dash(str(x, "title")),
            period(&r, x), json_is_true(get(x, "costed_budget")) ? "yes" : "no",
            json_is_true(get(x, "approved_values")) ? "yes" : "no");
        row_free(&r);
    }
    table_end(o);
    if (o->fmt == NS_REPORT_HTML)
        html_end(o);
}

static void render_coverage_csv(FILE *f, const json_t *rep)
{
    CSV(f, "section", "id", "label", "plans", "of", "share_pct");
    row r = {0};
    size_t i;
    const json_t *x;
    const char *of = count(&r, num(rep, "adopted_naps"));
    json_array_foreach(get(rep, "questions"), i, x)
    {
        CSV(f, "question", str(x, "id"), str(x, "question"), count(&r, num(x, "plans")), of,
            str(x, "share_pct"));
    }
    static const char *const parts[] = {"actions", "indicators", "plan_tag", "any"};
    static const char *const sections[] = {"tag_actions", "tag_indicators", "tag_plan", "tag_any"};
    json_array_foreach(get(rep, "tags"), i, x)
    {
        for (size_t k = 0; k < N(parts); k++) {
            const json_t *s = get(x, parts[k]);
            CSV(f, sections[k], str(x, "tag"), str(x, "label"), count(&r, num(s, "plans")), of,
                str(s, "share_pct"));
        }
    }
    row_free(&r);
}

int ns_report_render(const json_t *report, ns_report_format fmt, FILE *f, char *err, size_t errlen)
{
    const char *kind = str(report, "kind");
    out o = {.f = f, .fmt = fmt};
    if (kind && strcmp(kind, "progress") == 0) {
        if (fmt == NS_REPORT_CSV)
            render_progress_csv(f, report);
        else
            render_progress_doc(&o, report);
    } else if (kind && strcmp(kind, "region") == 0) {
        if (fmt == NS_REPORT_CSV)
            render_region_csv(f, report);
        else
            render_region_doc(&o, report);
    } else if (kind && strcmp(kind, "coverage") == 0) {
        if (fmt == NS_REPORT_CSV)
            render_coverage_csv(f, report);
        else
            render_coverage_doc(&o, report);
    } else {
        snprintf(err, errlen, "the server's report has no kind this client can render");
        return -1;
    }
    return 0;
}
