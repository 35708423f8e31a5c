//! `--html FILE`: the report as one self-contained page (inline SVG, no
//! script, nothing fetched): the figures that judge the run, then the
//! timeline's plots with the faults marked where they happened.

use std::fmt::Write as _;

use super::report::Report;
use super::timeline::Second;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a plot: its name, colour and a value per second (`None`: no sample).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

/// A round upper bound for the axis: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

fn plot(
    out: &mut String,
    title: &str,
    unit: &str,
    seconds: u64,
    series: &[Series<'_>],
    faults: &[(f64, String)],
) {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let top = nice_max(max);
    let span = seconds.max(1) as f64;
    let x = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * t / span;
    let y = |v: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - v / top);
    let _ = write!(
        out,
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    // Axes and grid: four horizontal lines with their values.
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 4.0,
            y(v) + 4.0,
            trim(v)
        );
    }
    let step = [5u64, 10, 20, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|s| seconds / s <= 12)
        .unwrap_or(1200);
    let mut t = 0;
    while t <= seconds {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{t} s</text>",
            x(t as f64),
            HEIGHT - 6.0
        );
        t += step;
    }
    for (at, label) in faults {
        let _ = write!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" class=\"fault\"><title>{2}</title></line>",
            x(*at),
            HEIGHT - BOTTOM,
            escape(label)
        );
    }
    for s in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (t, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(t as f64 + 0.5),
                        y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            out,
            "<path d=\"{path}\" stroke=\"{}\" class=\"line\"><title>{}</title></path>",
            s.colour,
            escape(s.name)
        );
    }
    out.push_str("</svg><p class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            s.colour,
            escape(s.name)
        );
    }
    let _ = write!(
        out,
        "<span class=\"unit\">{}</span></p></figure>",
        escape(unit)
    );
}

fn trim(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn count(seconds: &[Second], f: impl Fn(&Second) -> u64) -> Vec<Option<f64>> {
    seconds.iter().map(|s| Some(f(s) as f64)).collect()
}

/// The page.
pub fn render(report: &Report) -> String {
    let seconds = &report.timeline;
    let span = seconds.len() as u64;
    let faults: Vec<(f64, String)> = report
        .faults
        .iter()
        .map(|f| {
            let exit = f
                .exit
                .map_or_else(|| "no exit status".to_owned(), |c| format!("exit {c}"));
            (f.at_s, format!("{:.1} s: {} ({exit})", f.at_s, f.command))
        })
        .collect();
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>collabd load {run}</title>\
         <style>body{{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b1f24}}\
         h1{{font-size:1.4rem}}table{{border-collapse:collapse}}td,th{{padding:.15rem .8rem .15rem 0;text-align:left}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}figure{{margin:1.2rem 0}}figcaption{{font-weight:600}}\
         svg{{width:100%;height:auto}}.grid{{stroke:#e3e6ea}}.tick{{font-size:10px;fill:#57606a}}\
         .fault{{stroke:#b3261e;stroke-dasharray:4 3;stroke-width:1.5}}.line{{fill:none;stroke-width:1.6}}\
         .legend span{{margin-right:1rem}}.legend i{{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}}\
         .unit{{color:#57606a}}.bad{{color:#b3261e;font-weight:600}}.ok{{color:#116329;font-weight:600}}</style>\
         <h1>collabd load, run {run}</h1><p>{nodes} nodes · {agents} agents in {portals} portals · {sessions} sessions · \
         {rate} invitations/s for {dur} s · mix {mix}</p>",
        run = escape(&report.run),
        nodes = report.nodes.len(),
        agents = report.agents,
        portals = report.portals,
        sessions = report.sessions,
        rate = report.rate,
        dur = report.duration_s,
        mix = escape(&report.mix),
    );
    let breaks = report.invariant_breaks();
    let _ = write!(
        out,
        "<p class=\"{}\">{}</p><table>",
        if breaks == 0 { "ok" } else { "bad" },
        if breaks == 0 {
            "No invariant broke.".to_owned()
        } else {
            format!("{breaks} invariant break(s).")
        }
    );
    let outage = report
        .outages
        .iter()
        .map(|o| format!("{}–{} s ({} refused)", o.from_s, o.to_s, o.refused))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(&str, String)> = vec![
        (
            "Invitations sent / created",
            format!("{} / {}", report.invitations_sent, report.invitations),
        ),
        ("Double winners", report.double_winners.to_string()),
        ("Winners", report.winners.to_string()),
        (
            "Alerts on time / late / missing",
            format!(
                "{} / {} / {}",
                report.alerts - report.late_alerts,
                report.late_alerts,
                report.missing_alerts + report.missing_alerts_while_down
            ),
        ),
        (
            "… of the missing, while the agent's stream was down",
            report.missing_alerts_while_down.to_string(),
        ),
        (
            "Late alerts: p50 / p99 / max (ms)",
            format!(
                "{} / {} / {}",
                report.latency_ms.late_alert.p50,
                report.latency_ms.late_alert.p99,
                report.latency_ms.late_alert.max
            ),
        ),
        (
            "Offers to agents unreachable past the fade bound",
            report.ghost_offers.to_string(),
        ),
        (
            "Invite → alert p99 (ms)",
            report.latency_ms.invite_to_alert.p99.to_string(),
        ),
        (
            "Write outages (invitations refused)",
            if outage.is_empty() {
                "none".to_owned()
            } else {
                outage
            },
        ),
        ("Errors", report.errors.to_string()),
    ];
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
            escape(name),
            escape(&value)
        );
    }
    out.push_str("</table>");
    if !faults.is_empty() {
        out.push_str("<p>Faults (dashed red lines):</p><ul>");
        for (_, label) in &faults {
            let _ = write!(out, "<li>{}</li>", escape(label));
        }
        out.push_str("</ul>");
    }
    plot(
        &mut out,
        "Invitations per second",
        "per second",
        span,
        &[
            Series {
                name: "sent",
                colour: "#0969da",
                values: count(seconds, |s| s.sent),
            },
            Series {
                name: "created",
                colour: "#1a7f37",
                values: count(seconds, |s| s.created),
            },
            Series {
                name: "refused or failed (any call)",
                colour: "#b3261e",
                values: count(seconds, |s| s.refused),
            },
        ],
        &faults,
    );
    plot(
        &mut out,
        "p99 latency",
        "milliseconds",
        span,
        &[
            Series {
                name: "invite → alert",
                colour: "#8250df",
                values: seconds.iter().map(|s| s.alert_p99_ms).collect(),
            },
            Series {
                name: "invitation round trip",
                colour: "#bc4c00",
                values: seconds.iter().map(|s| s.invite_p99_ms).collect(),
            },
        ],
        &faults,
    );
    plot(
        &mut out,
        "Alerts per second",
        "per second",
        span,
        &[
            Series {
                name: "live",
                colour: "#1a7f37",
                values: count(seconds, |s| s.alerts),
            },
            Series {
                name: "late (from a reopened stream's snapshot)",
                colour: "#bf8700",
                values: count(seconds, |s| s.late_alerts),
            },
            Series {
                name: "offers to agents gone past the fade bound",
                colour: "#b3261e",
                values: count(seconds, |s| s.ghost_offers),
            },
        ],
        &faults,
    );
    plot(
        &mut out,
        "Event streams open",
        "streams",
        span,
        &[Series {
            name: "open",
            colour: "#0969da",
            values: count(seconds, |s| s.open_streams),
        }],
        &faults,
    );
    out.push_str("</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(101.0), 200.0);
        assert_eq!(nice_max(0.3), 0.5);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
