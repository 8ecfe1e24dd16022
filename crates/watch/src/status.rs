//! The public status page, rendered from a [`Snapshot`]: HTML for people
//! (server-rendered, no JavaScript, readable on a phone), JSON for
//! machines, Atom for feed readers. Pure functions: no I/O, the time is
//! given.
//!
//! What it shows is public by design: four components as users know them
//! (receiving mail, sending mail, mailbox access, storage), their state in
//! each region, open and recent incidents with their timelines, and 90
//! days of history. What it never shows: node names, addresses, who wrote
//! an update, or counts of anyone's mail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use facteur_store::Incident;
use serde_json::{Value, json};

use crate::keeper::Snapshot;

/// A component as the public sees it, and which incidents are its.
#[derive(Debug, Clone, Copy)]
pub struct Public {
    pub key: &'static str,
    pub name: &'static str,
    /// Does an incident about this internal component (its key) count here?
    owns: fn(&str) -> bool,
}

pub const COMPONENTS: [Public; 4] = [
    Public { key: "receiving", name: "Receiving mail", owns: |c| c == "acceptance" },
    Public {
        key: "sending",
        name: "Sending mail",
        owns: |c| c.starts_with("delivery:") || c.starts_with("destination:"),
    },
    Public { key: "mailboxes", name: "Mailbox access (IMAP, POP3)", owns: |c| c == "mailbox-access" },
    Public { key: "storage", name: "Storage", owns: |c| c == "storage" },
];

/// A component's state in a region, or a day's worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Operational,
    Degraded,
    Major,
}

impl State {
    /// What an open incident means for its public component: one
    /// destination failing, however badly, leaves sending mail degraded,
    /// not out (mail to everyone else flows).
    fn of(i: &Incident) -> State {
        if i.severity == "major" && !i.component.starts_with("destination:") { State::Major } else { State::Degraded }
    }

    pub fn key(self) -> &'static str {
        match self {
            State::Operational => "operational",
            State::Degraded => "degraded",
            State::Major => "major_outage",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            State::Operational => "Operational",
            State::Degraded => "Degraded",
            State::Major => "Major outage",
        }
    }
}

/// Days of history shown.
pub const DAYS: i64 = 90;

/// Everything the three renderings share, computed once.
struct View {
    /// Per public component: state per region.
    states: Vec<BTreeMap<String, State>>,
    /// Per public component: worst state per day (oldest first), and the
    /// share of the 90 days without an incident.
    days: Vec<(Vec<State>, f64)>,
}

impl View {
    fn new(s: &Snapshot, now: i64) -> View {
        let states = COMPONENTS
            .iter()
            .map(|p| {
                let mut by_region: BTreeMap<String, State> =
                    s.regions.iter().map(|r| (r.clone(), State::Operational)).collect();
                for i in s.incidents.iter().filter(|i| i.resolved_at.is_none() && (p.owns)(&i.component)) {
                    for r in i.regions() {
                        let e = by_region.entry(r).or_insert(State::Operational);
                        *e = (*e).max(State::of(i));
                    }
                }
                by_region
            })
            .collect();
        let today = now.div_euclid(86_400);
        let first = today - DAYS + 1;
        let days = COMPONENTS
            .iter()
            .map(|p| {
                let mut worst = vec![State::Operational; DAYS as usize];
                let mut spans: Vec<(i64, i64)> = Vec::new();
                for i in s.incidents.iter().filter(|i| (p.owns)(&i.component)) {
                    let (from, to) = (i.opened_at, i.resolved_at.unwrap_or(now).max(i.opened_at));
                    spans.push((from.max(first * 86_400), to.min(now)));
                    for d in from.div_euclid(86_400).max(first)..=to.div_euclid(86_400).min(today) {
                        let w = &mut worst[(d - first) as usize];
                        *w = (*w).max(State::of(i));
                    }
                }
                (worst, 1.0 - covered(spans) as f64 / (now - first * 86_400).max(1) as f64)
            })
            .collect();
        View { states, days }
    }

    /// The whole service in a few words.
    fn overall(&self) -> (&'static str, &'static str) {
        let all: Vec<State> = self.states.iter().flat_map(|m| m.values().copied()).collect();
        let worst = all.iter().copied().max().unwrap_or(State::Operational);
        let everywhere = |s: State| !all.is_empty() && all.iter().all(|x| *x >= s);
        match worst {
            State::Operational => ("operational", "All systems operational"),
            State::Major if everywhere(State::Major) => ("major_outage", "Major outage"),
            State::Major => ("partial_outage", "Partial outage"),
            State::Degraded => ("degraded", "Degraded performance"),
        }
    }
}

/// A share as a percentage with two decimals, rounded down: an incident
/// of a few minutes never reads as 100 %.
fn percent_floor(share: f64) -> f64 {
    (share * 10_000.0).floor() / 100.0
}

/// Seconds covered by the union of `spans`.
fn covered(mut spans: Vec<(i64, i64)>) -> i64 {
    spans.retain(|(a, b)| b > a);
    spans.sort();
    let (mut total, mut end) = (0, i64::MIN);
    for (a, b) in spans {
        let a = a.max(end);
        if b > a {
            total += b - a;
            end = b;
        }
    }
    total
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `2026-12-07 04:05 UTC`.
pub fn human_time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn day(d: i64) -> String {
    DateTime::<Utc>::from_timestamp(d * 86_400, 0).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn public_component(i: &Incident) -> &'static str {
    COMPONENTS.iter().find(|p| (p.owns)(&i.component)).map(|p| p.name).unwrap_or("Service")
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "component": public_component(i),
        "severity": i.severity,
        "state": if i.resolved_at.is_some() { "resolved" } else { "open" },
        "regions": i.regions(),
        "opened_at": rfc3339(i.opened_at),
        "resolved_at": i.resolved_at.map(rfc3339),
        "updates": i.updates.iter().map(|u| json!({"at": rfc3339(u.at), "kind": u.kind, "text": u.text})).collect::<Vec<_>>(),
    })
}

/// `/status.json`.
pub fn json(s: &Snapshot, now: i64) -> Value {
    let v = View::new(s, now);
    let today = now.div_euclid(86_400);
    json!({
        "status": v.overall().0,
        "description": v.overall().1,
        "updated_at": rfc3339(s.at),
        "stale": s.stale,
        "regions": s.regions,
        "components": COMPONENTS.iter().enumerate().map(|(n, p)| json!({
            "key": p.key,
            "name": p.name,
            "regions": v.states[n].iter().map(|(r, st)| (r.clone(), json!(st.key()))).collect::<serde_json::Map<_, _>>(),
            "uptime_90d": percent_floor(v.days[n].1),
            "days": v.days[n].0.iter().enumerate().map(|(k, st)| json!({
                "date": day(today - DAYS + 1 + k as i64), "state": st.key()
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "incidents": s.incidents.iter().map(incident_json).collect::<Vec<_>>(),
    })
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1a1a1a;background:#fff;line-height:1.5}\
main{max-width:56rem;margin:0 auto;padding:1rem}\
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin-top:2rem}h3{font-size:1.05rem;margin:.25rem 0}\
.banner{padding:.75rem 1rem;border-radius:.4rem;font-weight:600;color:#fff}\
.operational{background:#17692f}.degraded{background:#8a4b00}.partial_outage,.major_outage{background:#a4001b}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ccc}\
.st-operational{color:#17692f}.st-degraded{color:#8a4b00}.st-major_outage{color:#a4001b}\
.st-operational,.st-degraded,.st-major_outage{font-weight:600}\
ol.bars{display:flex;gap:1px;list-style:none;padding:0;margin:.25rem 0}\
ol.bars li{flex:1;height:2rem;min-width:2px}\
.incident{border-left:.3rem solid #a4001b;padding:.25rem .75rem;margin:1rem 0}.incident.resolved{border-color:#17692f}\
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}\
.muted{color:#555}";

/// `/status`.
pub fn html(s: &Snapshot, now: i64, site: &str) -> String {
    let v = View::new(s, now);
    let (overall_key, overall) = v.overall();
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    o.push_str(&format!("<title>{} status</title>", esc(site)));
    o.push_str("<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incidents\" href=\"/status.atom\">");
    o.push_str(&format!("<style>{STYLE}</style></head><body><main>"));
    o.push_str(&format!("<h1>{} status</h1>", esc(site)));
    o.push_str(&format!("<p class=\"banner {overall_key}\" role=\"status\">{overall}</p>"));
    if s.stale {
        o.push_str(
            "<p class=\"muted\">Incident history could not be read just now; what follows may be a little old.</p>",
        );
    }
    o.push_str(&format!("<p class=\"muted\">Updated {}.</p>", human_time(s.at)));

    // Components by region.
    o.push_str("<h2>Components</h2><table><caption class=\"sr\">State of each component in each region</caption><thead><tr><th scope=\"col\">Component</th>");
    for r in &s.regions {
        o.push_str(&format!("<th scope=\"col\">{}</th>", esc(r)));
    }
    o.push_str("</tr></thead><tbody>");
    for (n, p) in COMPONENTS.iter().enumerate() {
        o.push_str(&format!("<tr><th scope=\"row\">{}</th>", p.name));
        for r in &s.regions {
            let st = v.states[n].get(r).copied().unwrap_or(State::Operational);
            o.push_str(&format!("<td class=\"st-{}\">{}</td>", st.key(), st.words()));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    // A partial outage in words.
    for (n, p) in COMPONENTS.iter().enumerate() {
        let bad: Vec<String> = v.states[n]
            .iter()
            .filter(|(_, st)| **st != State::Operational)
            .map(|(r, st)| format!("{} in {}", st.words().to_lowercase(), esc(r)))
            .collect();
        if !bad.is_empty() {
            let fine = v.states[n].values().filter(|st| **st == State::Operational).count();
            let rest = if fine > 0 { "; operational elsewhere" } else { "" };
            o.push_str(&format!("<p><strong>{}</strong>: {}{rest}.</p>", p.name, bad.join(", ")));
        }
    }

    // Incidents.
    let (open, past): (Vec<&Incident>, Vec<&Incident>) = s.incidents.iter().partition(|i| i.resolved_at.is_none());
    o.push_str("<h2>Current incidents</h2>");
    if open.is_empty() {
        o.push_str("<p>No incidents right now.</p>");
    }
    for (n, i) in open.iter().chain(past.iter().take(20)).enumerate() {
        if n == open.len() {
            o.push_str("<h2>Past incidents</h2>");
        }
        incident_html(&mut o, i);
    }

    // 90 days.
    o.push_str(&format!("<h2>The last {DAYS} days</h2>"));
    let today = now.div_euclid(86_400);
    for (n, p) in COMPONENTS.iter().enumerate() {
        let (days, up) = &v.days[n];
        o.push_str(&format!(
            "<h3>{} <span class=\"muted\">{:.2} % without incident</span></h3>",
            p.name,
            percent_floor(*up)
        ));
        o.push_str(&format!("<ol class=\"bars\" aria-label=\"{} over the last {DAYS} days\">", p.name));
        for (k, st) in days.iter().enumerate() {
            let date = day(today - DAYS + 1 + k as i64);
            let words = if *st == State::Operational { "no incident".to_string() } else { st.words().to_lowercase() };
            o.push_str(&format!(
                "<li class=\"{}\" title=\"{date}: {words}\"><span class=\"sr\">{date}: {words}</span></li>",
                st.key()
            ));
        }
        o.push_str("</ol>");
    }
    o.push_str("<p class=\"muted\">Also as <a href=\"/status.json\">JSON</a> and an <a href=\"/status.atom\">Atom feed</a>.</p>");
    o.push_str("</main></body></html>\n");
    o
}

fn incident_html(o: &mut String, i: &Incident) {
    let resolved = i.resolved_at.is_some();
    let regions = i.regions();
    o.push_str(&format!(
        "<article class=\"incident{}\"><h3>{}</h3><p class=\"muted\">{} · {} · {}{}</p><ol>",
        if resolved { " resolved" } else { "" },
        esc(&i.title),
        public_component(i),
        if resolved { "Resolved" } else { State::of(i).words() },
        esc(&if regions.is_empty() { "all regions".to_string() } else { regions.join(", ") }),
        if resolved { String::new() } else { format!(" · since {}", human_time(i.opened_at)) },
    ));
    for u in i.updates.iter().rev() {
        o.push_str(&format!(
            "<li><strong>{}</strong> <time datetime=\"{}\">{}</time>: {}</li>",
            esc(&capital(&u.kind)),
            rfc3339(u.at),
            human_time(u.at),
            esc(&u.text)
        ));
    }
    o.push_str("</ol></article>");
}

/// `s` with its first letter in capitals.
pub(crate) fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// `/status.atom` (RFC 4287): one entry per incident, updated with its
/// last update.
pub fn atom(s: &Snapshot, now: i64, site: &str, base: &str) -> String {
    let updated = s.incidents.iter().flat_map(|i| i.updates.last().map(|u| u.at)).max().unwrap_or(now);
    let mut o =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">");
    o.push_str(&format!("<title>{} incidents</title>", esc(site)));
    o.push_str(&format!("<id>{}/status.atom</id>", esc(base)));
    o.push_str(&format!("<link rel=\"self\" href=\"{}/status.atom\"/>", esc(base)));
    o.push_str(&format!("<link rel=\"alternate\" type=\"text/html\" href=\"{}/status\"/>", esc(base)));
    o.push_str(&format!("<updated>{}</updated><author><name>{}</name></author>", rfc3339(updated), esc(site)));
    for i in &s.incidents {
        let last = i.updates.last().map(|u| u.at).unwrap_or(i.opened_at);
        let id = if i.id > 0 {
            format!("{base}/status#incident-{}", i.id)
        } else {
            format!("{base}/status#pending-{}-{}", i.component, i.opened_at)
        };
        let state = if i.resolved_at.is_some() { "Resolved" } else { State::of(i).words() };
        let mut text = format!("{} · {} · {}\n", public_component(i), state, i.regions().join(", "));
        for u in i.updates.iter().rev() {
            text.push_str(&format!("\n{} ({}): {}", capital(&u.kind), human_time(u.at), u.text));
        }
        o.push_str(&format!(
            "<entry><id>{}</id><title>{}{}</title><updated>{}</updated><published>{}</published><content type=\"text\">{}</content></entry>",
            esc(&id),
            if i.resolved_at.is_some() { "[Resolved] " } else { "" },
            esc(&i.title),
            rfc3339(last),
            rfc3339(i.opened_at),
            esc(&text)
        ));
    }
    o.push_str("</feed>\n");
    o
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use facteur_store::IncidentUpdate;

    const NOW: i64 = 1_800_000_000;

    fn incident(
        id: i64,
        component: &str,
        severity: &str,
        regions: &[(&str, &str)],
        opened: i64,
        resolved: Option<i64>,
    ) -> Incident {
        Incident {
            id,
            component: component.into(),
            title: format!("{component} <trouble>"),
            severity: severity.into(),
            affected: regions.iter().map(|(n, r)| (n.to_string(), vec![r.to_string()])).collect(),
            opened_at: opened,
            resolved_at: resolved,
            updates: vec![IncidentUpdate {
                at: opened,
                kind: "opened".into(),
                text: "It broke & we know.".into(),
                author: "facteur on n1".into(),
            }],
        }
    }

    fn snapshot(incidents: Vec<Incident>) -> Snapshot {
        Snapshot { incidents, regions: BTreeSet::from(["eu".into(), "us".into()]), at: NOW, stale: false }
    }

    #[test]
    fn a_failure_in_one_region_reads_as_partial() {
        let s = snapshot(vec![incident(1, "mailbox-access", "major", &[("n1", "eu")], NOW - 300, None)]);
        let j = json(&s, NOW);
        assert_eq!(j["status"], "partial_outage");
        let mb = &j["components"][2];
        assert_eq!(
            (mb["regions"]["eu"].as_str(), mb["regions"]["us"].as_str()),
            (Some("major_outage"), Some("operational"))
        );
        assert_eq!(j["components"][0]["regions"]["eu"], "operational");
        let h = html(&s, NOW, "Example Mail");
        assert!(
            h.contains("<strong>Mailbox access (IMAP, POP3)</strong>: major outage in eu; operational elsewhere."),
            "{h}"
        );
        assert!(h.contains("mailbox-access &lt;trouble&gt;"), "titles are escaped");
        assert!(!h.contains("n1"), "no node names on the public page");
        assert!(!j.to_string().contains("n1"));
    }

    #[test]
    fn all_is_well_and_history_counts_days() {
        let s = snapshot(vec![incident(
            2,
            "storage",
            "degraded",
            &[("n1", "eu")],
            NOW - 86_400 - 3600,
            Some(NOW - 86_400),
        )]);
        let j = json(&s, NOW);
        assert_eq!(j["status"], "operational");
        let days = j["components"][3]["days"].as_array().unwrap();
        assert_eq!(days.len(), DAYS as usize);
        let bad: Vec<&Value> = days.iter().filter(|d| d["state"] != "operational").collect();
        assert!((1..=2).contains(&bad.len()), "{bad:?}");
        let up = j["components"][3]["uptime_90d"].as_f64().unwrap();
        assert!(up < 100.0 && up > 99.9, "{up}");
        assert_eq!(j["components"][0]["uptime_90d"].as_f64(), Some(100.0));
        let h = html(&s, NOW, "Example Mail");
        assert!(h.contains("All systems operational") && h.contains("Past incidents"), "{h}");
    }

    #[test]
    fn the_feed_has_an_entry_per_incident() {
        let s = snapshot(vec![
            incident(3, "destination:example.com", "degraded", &[("n1", "eu")], NOW - 60, None),
            incident(2, "storage", "degraded", &[("n1", "eu")], NOW - 7200, Some(NOW - 3600)),
        ]);
        // One destination down, however badly: sending is degraded, not out.
        let mut down = s.clone();
        down.incidents[0].severity = "major".into();
        let j = json(&down, NOW);
        assert_eq!(
            (j["status"].as_str(), j["components"][1]["regions"]["eu"].as_str()),
            (Some("degraded"), Some("degraded"))
        );
        let a = atom(&s, NOW, "Example Mail", "http://status.example");
        assert_eq!(a.matches("<entry>").count(), 2);
        assert!(a.contains("<id>http://status.example/status#incident-3</id>"));
        assert!(a.contains("[Resolved] storage &lt;trouble&gt;"));
        assert!(a.contains("It broke &amp; we know."));
    }

    #[test]
    fn overlapping_spans_count_once() {
        assert_eq!(covered(vec![(0, 10), (5, 15), (20, 30), (30, 30)]), 25);
    }
}
