/*
 * chart.c - `keybroker incident chart`: an incident's remediation as an SVG drawing, one
 * panel per member state (and one for every market, and one for the EU), each a stacked area
 * of the devices that run the fix (green) and those still pending (orange) day by day, with
 * the day the fix became available and the final report's due day marked.  Made from the
 * incident as GET /v1/incidents/{id} shows it (over_time), so it is what the broker counted.
 *
 * Everything from the broker that reaches the drawing is escaped as XML text; nothing but the
 * shapes and text made here can be in it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "kbr_cra.h"

#define PANEL_W   300
#define PANEL_H   150
#define PLOT_L    44 /* left margin inside a panel, for the count axis */
#define PLOT_R    12
#define PLOT_T    28
#define PLOT_B    26
#define COLUMNS   3
#define HEAD_H    96
#define MARGIN    20
#define UPDATED   "#2e9e5b"
#define PENDING   "#e8772e"
#define FIX_LINE  "#1f4e9e"
#define DUE_LINE  "#b3261e"
#define GRID_LINE "#d9d9d9"

/* Text from the broker, as XML character data or an attribute value. */
static void xml_put(FILE *f, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            /* XML 1.0 has no place for C0 controls but tab, LF and CR */
            fputc(c < 0x20 || c == 0x7f ? ' ' : (int)c, f);
        }
    }
}

static const char *str_of(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

/* A day "YYYY-MM-DD" (or a time that starts with one) as seconds since the epoch. */
static bool day_time(const char *s, time_t *out)
{
    char t[KBR_TIME_LEN];

    if (s == NULL || strlen(s) < 10)
        return false;
    snprintf(t, sizeof(t), "%.10sT00:00:00Z", s);
    return kbr_time_parse(t, out) == KBR_OK;
}

typedef struct {
    const char *title;
    const json_t *figures; /* {affected [], updated [], pending []} */
} panel;

typedef struct {
    const json_t *days;
    size_t n;
    time_t t0, t1; /* the drawing's first day and the day after its last */
    time_t fix, due;
} axis;

static double x_of(const axis *a, time_t t, double w)
{
    if (a->t1 <= a->t0)
        return 0;
    return w * (double)(t - a->t0) / (double)(a->t1 - a->t0);
}

static json_int_t figure(const json_t *figures, const char *field, size_t i)
{
    return json_integer_value(json_array_get(json_object_get(figures, field), i));
}

/* The step line of the updated devices (upper false), or of updated and pending together
 * (upper true, closed back along the updated line), as a filled path. */
static void area(FILE *f, const axis *a, const json_t *figures, bool upper, double x0, double y0,
                 double w, double h, json_int_t top, const char *colour)
{
    fprintf(f, "<path fill=\"%s\" fill-opacity=\"0.85\" d=\"M%.1f %.1f", colour, x0, y0 + h);
    for (size_t i = 0; i < a->n; i++) {
        time_t t, next = a->t1;
        json_int_t v = figure(figures, "updated", i) + (upper ? figure(figures, "pending", i) : 0);
        double y = y0 + h - (top > 0 ? h * (double)v / (double)top : 0);

        if (!day_time(json_string_value(json_array_get(a->days, i)), &t))
            continue;
        if (i + 1 < a->n)
            (void)day_time(json_string_value(json_array_get(a->days, i + 1)), &next);
        fprintf(f, " L%.1f %.1f L%.1f %.1f", x0 + x_of(a, t, w), y, x0 + x_of(a, next, w), y);
    }
    fprintf(f, " L%.1f %.1f", x0 + w, y0 + h);
    if (upper) {
        /* back along the top of the updated area */
        for (size_t i = a->n; i-- > 0;) {
            time_t t, next = a->t1;
            json_int_t v = figure(figures, "updated", i);
            double y = y0 + h - (top > 0 ? h * (double)v / (double)top : 0);

            if (!day_time(json_string_value(json_array_get(a->days, i)), &t))
                continue;
            if (i + 1 < a->n)
                (void)day_time(json_string_value(json_array_get(a->days, i + 1)), &next);
            fprintf(f, " L%.1f %.1f L%.1f %.1f", x0 + x_of(a, next, w), y, x0 + x_of(a, t, w), y);
        }
    }
    fputs(" Z\"/>\n", f);
}

static void marker(FILE *f, const axis *a, time_t t, double x0, double y0, double w, double h,
                   const char *colour)
{
    double x;

    if (t < a->t0 || t > a->t1)
        return;
    x = x0 + x_of(a, t, w);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>\n",
            x, y0, x, y0 + h, colour);
}

static void day_label(FILE *f, time_t t, double x, double y, const char *anchor)
{
    char s[KBR_TIME_LEN];

    kbr_time_fmt(t, s);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" text-anchor=\"%s\">%.10s"
            "</text>\n",
            x, y, anchor, s);
}

static void draw_panel(FILE *f, const axis *a, const panel *p, double px, double py)
{
    double x0 = px + PLOT_L, y0 = py + PLOT_T, w = PANEL_W - PLOT_L - PLOT_R;
    double h = PANEL_H - PLOT_T - PLOT_B;
    size_t last = a->n > 0 ? a->n - 1 : 0;
    json_int_t top = 0, up = figure(p->figures, "updated", last);
    json_int_t pend = figure(p->figures, "pending", last);

    for (size_t i = 0; i < a->n; i++)
        if (figure(p->figures, "affected", i) > top)
            top = figure(p->figures, "affected", i);
    fprintf(f,
            "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
            "stroke=\"#e0e0e0\"/>\n",
            px, py, PANEL_W, PANEL_H);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", px + 8,
            py + 18);
    xml_put(f, p->title);
    fprintf(f,
            "</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">"
            "<tspan fill=\"%s\">%" JSON_INTEGER_FORMAT " updated</tspan> \u00b7 "
            "<tspan fill=\"%s\">%" JSON_INTEGER_FORMAT " pending</tspan></text>\n",
            px + PANEL_W - 8, py + 18, UPDATED, up, PENDING, pend);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
            x0, y0, x0 + w, y0, GRID_LINE, x0, y0 + h, x0 + w, y0 + h, "#999");
    if (a->n > 0) {
        area(f, a, p->figures, true, x0, y0, w, h, top, PENDING);
        area(f, a, p->figures, false, x0, y0, w, h, top, UPDATED);
    }
    marker(f, a, a->fix, x0, y0, w, h, FIX_LINE);
    marker(f, a, a->due, x0, y0, w, h, DUE_LINE);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" text-anchor=\"end\">"
            "%" JSON_INTEGER_FORMAT "</text>\n"
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" text-anchor=\"end\">0"
            "</text>\n",
            x0 - 4, y0 + 4, top, x0 - 4, y0 + h);
    day_label(f, a->t0, x0, y0 + h + 14, "start");
    day_label(f, a->t1 - 86400, x0 + w, y0 + h + 14, "end");
    fputs("</g>\n", f);
}

/* The panels: every market, the EU, then each member state, most affected first. */
static size_t panels_of(const json_t *ot, panel *out, size_t max)
{
    const json_t *by_market = json_object_get(ot, "by_market"), *fig;
    size_t n = 0, last = json_array_size(json_object_get(ot, "days"));
    const char *code;

    out[n++] = (panel){"All markets", json_object_get(ot, "total")};
    out[n++] = (panel){"EU", json_object_get(ot, "eu")};
    json_object_foreach((json_t *)by_market, code, fig)
    {
        size_t k;
        panel t;

        if (n >= max || !kbr_market_is_eu(code))
            continue;
        out[n] = (panel){code, fig};
        /* insertion by the last day's affected, then by code */
        for (k = n; k > 2 && last > 0; k--) {
            json_int_t a = figure(out[k - 1].figures, "affected", last - 1);
            json_int_t b = figure(out[k].figures, "affected", last - 1);
            if (a > b || (a == b && strcmp(out[k - 1].title, out[k].title) < 0))
                break;
            t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
        n++;
    }
    return n;
}

static void heading(FILE *f, const json_t *inc, double width, time_t now)
{
    const json_t *fix = json_object_get(inc, "fix");
    char when[KBR_TIME_LEN];

    kbr_time_fmt(now, when);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"20\" font-weight=\"bold\">Incident ", MARGIN,
            MARGIN + 18);
    xml_put(f, str_of(inc, "id"));
    fputs(": ", f);
    xml_put(f, str_of(inc, "title"));
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#333\">Remediation of ",
            MARGIN, MARGIN + 40);
    xml_put(f, str_of(inc, "component"));
    fputs(": devices that ran an affected build, by market, day by day. ", f);
    if (json_is_object(fix)) {
        fputs("Fixed in firmware ", f);
        xml_put(f, str_of(fix, "fixed_version"));
        fputs(".", f);
    } else {
        fputs("No fix recorded yet.", f);
    }
    fprintf(f,
            "</text>\n<g font-size=\"11\">"
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
            "<text x=\"%d\" y=\"%d\">updated (fixed version or later)</text>"
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
            "<text x=\"%d\" y=\"%d\">pending</text>"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1.5\" "
            "stroke-dasharray=\"4 3\"/><text x=\"%d\" y=\"%d\">fix available</text>"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1.5\" "
            "stroke-dasharray=\"4 3\"/><text x=\"%d\" y=\"%d\">final report due</text>"
            "<text x=\"%.0f\" y=\"%d\" text-anchor=\"end\" fill=\"#777\">as of %s</text></g>\n",
            MARGIN, MARGIN + 54, UPDATED, MARGIN + 16, MARGIN + 64, MARGIN + 220, MARGIN + 54,
            PENDING, MARGIN + 236, MARGIN + 64, MARGIN + 310, MARGIN + 60, MARGIN + 330,
            MARGIN + 60, FIX_LINE, MARGIN + 336, MARGIN + 64, MARGIN + 430, MARGIN + 60,
            MARGIN + 450, MARGIN + 60, DUE_LINE, MARGIN + 456, MARGIN + 64, width - MARGIN,
            MARGIN + 64, when);
}

kbr_err cli_incident_chart_svg(const json_t *inc, time_t now, char **out)
{
    kbr_err err = KBR_OK;
    const json_t *ot = json_object_get(inc, "over_time");
    const json_t *due =
        json_object_get(json_object_get(json_object_get(inc, "deadlines"), "final_report"), "due");
    axis a = {.days = json_object_get(ot, "days")};
    panel panels[32];
    size_t n, rows;
    double width = 2 * MARGIN + COLUMNS * PANEL_W + (COLUMNS - 1) * 12, height;
    cli_text svg = {0};
    FILE *f;
    time_t last = 0;

    KBR_ENSURE(json_is_array(a.days) && json_is_object(json_object_get(ot, "total")) &&
                   str_of(inc, "id") != NULL,
               KBR_ERR_BAD_REQUEST);
    a.n = json_array_size(a.days);
    for (size_t i = 0; i < a.n; i++)
        KBR_ENSURE(day_time(json_string_value(json_array_get(a.days, i)), &last),
                   KBR_ERR_BAD_REQUEST);
    a.fix = 0;
    (void)day_time(str_of(json_object_get(inc, "fix"), "available_at"), &a.fix);
    a.due = 0;
    (void)day_time(json_string_value(due), &a.due);
    if (a.n == 0 || !day_time(json_string_value(json_array_get(a.days, 0)), &a.t0))
        a.t0 = now - now % 86400;
    /* to today, or the final report's due day if it is later: the drawing shows what is left */
    a.t1 = (now > last ? now : last) - (now > last ? now : last) % 86400 + 86400;
    if (a.due >= a.t1)
        a.t1 = a.due + 86400;
    n = panels_of(ot, panels, sizeof(panels) / sizeof(panels[0]));
    rows = (n + COLUMNS - 1) / COLUMNS;
    height = HEAD_H + MARGIN + (double)rows * (PANEL_H + 12) + MARGIN;
    KBR_GUARD(cli_text_open(&svg));
    f = svg.f;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height);
    heading(f, inc, width, now);
    for (size_t i = 0; i < n; i++)
        draw_panel(f, &a, &panels[i], MARGIN + (double)(i % COLUMNS) * (PANEL_W + 12),
                   HEAD_H + MARGIN + (double)(i / COLUMNS) * (PANEL_H + 12));
    fputs("</svg>\n", f);
out:
    return cli_text_close(&svg, err, out);
}
