//! The league (红黑榜, README "Fleet"): the estates of one period ranked by their scorecards,
//! pure (no clock, no I/O; the hub hands in what it stored).
//!
//! - **Ranked** are the estates with an assessment for the period that has a total, except a
//!   *stale* estate (its last live summary older than `hub.stale_after`) whose assessment is
//!   still `partial` (the period had not ended when it was computed): its figures stopped
//!   when the estate went silent, so it is listed as `stale`, unranked and on no list — never
//!   silently ranked on old data. A closed period's scorecard is final and ranks whatever the
//!   estate's state today (the row still carries `stale`).
//! - **Order**: higher total first; a tie goes to the higher score of the tie-break KPI
//!   (`league.tie_kpi`, default `response_timeliness`; an estate without it comes after one
//!   with it); then the site id in byte order. Ranks are 1, 2, 3, … with no shared ranks.
//! - **Red list** (红榜): rank ≤ `red_top`, or total ≥ `red_min_score`.
//!   **Black list** (黑榜): rank > ranked − `black_bottom`, or total < `black_below`; an estate
//!   on the red list is never also on the black list.
//! - **Change**: `previous_total` and `previous_rank` are those of the previous period (the
//!   month, quarter, heating season or year before, ranked by the same rules), `change` the
//!   difference of the totals.
//! - Unranked rows follow the ranked ones: `stale`, then `no_score` (an assessment without a
//!   total), then `no_assessment` (a known estate that sent none for the period), each by site.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{EstateTags, LeagueRules};

/// One KPI of a published scorecard (`report::scorecard::KpiScore` as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiLine {
    pub name: String,
    #[serde(default)]
    pub label: String,
    pub actual: Option<f64>,
    #[serde(default)]
    pub target: f64,
    #[serde(default)]
    pub weight: f64,
    pub score: Option<f64>,
}

/// A published scorecard (the `estate/{site}/assessment/{period}` message), as the hub
/// reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub site: String,
    pub period: String,
    pub total: Option<f64>,
    pub grade: Option<String>,
    #[serde(default)]
    pub partial: bool,
    #[serde(default)]
    pub kpis: Vec<KpiLine>,
}

/// What the league knows about one estate.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub site: String,
    pub tags: EstateTags,
    pub current: Option<Assessment>,
    pub previous: Option<Assessment>,
    pub stale: bool,
}

/// One row of the league.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub rank: Option<usize>,
    pub site: String,
    #[serde(flatten)]
    pub tags: EstateTags,
    /// `ranked`, `stale`, `no_score` or `no_assessment`.
    pub status: &'static str,
    pub stale: bool,
    pub total: Option<f64>,
    pub grade: Option<String>,
    pub partial: bool,
    pub kpis: Vec<KpiLine>,
    pub previous_total: Option<f64>,
    pub previous_rank: Option<usize>,
    pub change: Option<f64>,
    /// `red`, `black` or none.
    pub list: Option<&'static str>,
}

/// The league of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct League {
    pub period: String,
    pub previous_period: Option<String>,
    pub tie_kpi: String,
    pub rows: Vec<Row>,
    pub red: Vec<String>,
    pub black: Vec<String>,
}

/// The forms `--period` takes.
pub const VALID_PERIODS: &str =
    "2026-11 (a month), 2026Q4 (a quarter), heating-2026 or 2026-heating (the heating season that starts in 2026), 2026 (a year)";

/// The period label as gateways publish it (`2026-heating` → `heating-2026`); `None` when it
/// is none of the forms of `VALID_PERIODS`.
pub fn normalize_period(p: &str) -> Option<String> {
    let p = p.trim();
    let year = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
    if let Some(y) = p.strip_suffix("-heating").or(p.strip_prefix("heating-")) {
        return year(y).then(|| format!("heating-{y}"));
    }
    if year(p) {
        return Some(p.to_owned());
    }
    if let Some((y, q)) = p.split_once('Q') {
        return (year(y) && matches!(q, "1" | "2" | "3" | "4")).then(|| p.to_owned());
    }
    if let Some((y, m)) = p.split_once('-') {
        let ok = m.len() == 2 && m.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
        return (year(y) && ok).then(|| p.to_owned());
    }
    None
}

/// The period before a normalized one: the month, quarter, heating season or year before.
pub fn previous_period(p: &str) -> Option<String> {
    let y = |s: &str| s.parse::<u32>().ok().filter(|y| *y > 1970);
    if let Some(s) = p.strip_prefix("heating-") {
        return y(s).map(|y| format!("heating-{}", y - 1));
    }
    if let Some((s, q)) = p.split_once('Q') {
        let (y, q) = (y(s)?, q.parse::<u32>().ok()?);
        return Some(if q == 1 {
            format!("{}Q4", y - 1)
        } else {
            format!("{y}Q{}", q - 1)
        });
    }
    if let Some((s, m)) = p.split_once('-') {
        let (y, m) = (y(s)?, m.parse::<u32>().ok()?);
        return Some(if m == 1 {
            format!("{}-12", y - 1)
        } else {
            format!("{y}-{:02}", m - 1)
        });
    }
    y(p).map(|y| (y - 1).to_string())
}

fn tie_score(a: &Assessment, kpi: &str) -> Option<f64> {
    a.kpis.iter().find(|k| k.name == kpi).and_then(|k| k.score)
}

/// The ranking order of two ranked assessments (see the module docs).
fn order(a: &Assessment, b: &Assessment, tie_kpi: &str) -> Ordering {
    let total = |x: &Assessment| x.total.unwrap_or(f64::NEG_INFINITY);
    total(b)
        .total_cmp(&total(a))
        .then_with(|| match (tie_score(a, tie_kpi), tie_score(b, tie_kpi)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.site.cmp(&b.site))
}

/// The sites in rank order among `assessments` that can be ranked (a total, not excluded).
fn ranking<'a>(
    assessments: impl Iterator<Item = &'a Assessment>,
    tie_kpi: &str,
) -> Vec<&'a Assessment> {
    let mut v: Vec<&Assessment> = assessments.filter(|a| a.total.is_some()).collect();
    v.sort_by(|a, b| order(a, b, tie_kpi));
    v
}

/// The league of `period` over `entries` (see the module docs).
pub fn league(period: &str, entries: &[Entry], rules: &LeagueRules) -> League {
    let tie = rules.tie_kpi.as_str();
    let excluded = |e: &Entry| e.stale && e.current.as_ref().is_some_and(|a| a.partial);
    let ranked = ranking(
        entries
            .iter()
            .filter(|e| !excluded(e))
            .filter_map(|e| e.current.as_ref()),
        tie,
    );
    let previous: BTreeMap<&str, usize> =
        ranking(entries.iter().filter_map(|e| e.previous.as_ref()), tie)
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a.site.as_str(), i + 1))
            .collect();
    let n = ranked.len();
    let by_site: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.site.as_str(), e)).collect();
    let mut rows = Vec::new();
    let (mut red, mut black) = (Vec::new(), Vec::new());
    let row = |e: &Entry, rank: Option<usize>, status: &'static str| {
        let prev_total = e.previous.as_ref().and_then(|p| p.total);
        let cur = e.current.as_ref();
        let total = cur.and_then(|a| a.total);
        Row {
            rank,
            site: e.site.clone(),
            tags: e.tags.clone(),
            status,
            stale: e.stale,
            total,
            grade: cur.and_then(|a| a.grade.clone()),
            partial: cur.is_some_and(|a| a.partial),
            kpis: cur.map(|a| a.kpis.clone()).unwrap_or_default(),
            previous_total: prev_total,
            previous_rank: previous.get(e.site.as_str()).copied(),
            change: total
                .zip(prev_total)
                .map(|(t, p)| ((t - p) * 1e9).round() / 1e9),
            list: None,
        }
    };
    for (i, a) in ranked.iter().enumerate() {
        let rank = i + 1;
        let Some(e) = by_site.get(a.site.as_str()) else {
            continue;
        };
        let mut r = row(e, Some(rank), "ranked");
        let total = a.total.unwrap_or(0.0);
        let is_red = rank <= rules.red_top || rules.red_min_score.is_some_and(|m| total >= m);
        let is_black =
            rank + rules.black_bottom > n || rules.black_below.is_some_and(|b| total < b);
        if is_red {
            r.list = Some("red");
            red.push(r.site.clone());
        } else if is_black {
            r.list = Some("black");
            black.push(r.site.clone());
        }
        rows.push(r);
    }
    let mut rest: Vec<(u8, Row)> = entries
        .iter()
        .filter(|e| !ranked.iter().any(|a| a.site == e.site))
        .map(|e| match &e.current {
            Some(_) if excluded(e) => (0, row(e, None, "stale")),
            Some(_) => (1, row(e, None, "no_score")),
            None => (2, row(e, None, "no_assessment")),
        })
        .collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.site.cmp(&b.1.site)));
    rows.extend(rest.into_iter().map(|(_, r)| r));
    League {
        period: period.to_owned(),
        previous_period: previous_period(period),
        tie_kpi: rules.tie_kpi.clone(),
        rows,
        red,
        black,
    }
}

fn fmt_num(v: Option<f64>) -> String {
    v.map(|v| format!("{}", (v * 100.0).round() / 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The KPI names in the order the rows list them (first row that has them).
fn kpi_names(l: &League) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in &l.rows {
        for k in &r.kpis {
            if !names.contains(&k.name) {
                names.push(k.name.clone());
            }
        }
    }
    names
}

fn kpi_score(r: &Row, name: &str) -> Option<f64> {
    r.kpis.iter().find(|k| k.name == name).and_then(|k| k.score)
}

/// `hub league --format table`.
pub fn table(l: &League) -> String {
    let names = kpi_names(l);
    let mut out = format!(
        "League {} (previous: {}; ties: total, then {}, then site)\n",
        l.period,
        l.previous_period.as_deref().unwrap_or("-"),
        l.tie_kpi
    );
    let mut head = vec![
        "rank".to_owned(),
        "site".into(),
        "total".into(),
        "grade".into(),
        "change".into(),
        "list".into(),
        "status".into(),
    ];
    head.extend(names.iter().cloned());
    let mut lines = vec![head];
    for r in &l.rows {
        let mut v = vec![
            r.rank.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            r.site.clone(),
            fmt_num(r.total),
            r.grade.clone().unwrap_or_else(|| "-".into()),
            r.change
                .map(|c| format!("{c:+}"))
                .unwrap_or_else(|| "-".into()),
            match r.list {
                Some("red") => "红榜".into(),
                Some(_) => "黑榜".into(),
                None => "".into(),
            },
            r.status.to_owned(),
        ];
        v.extend(names.iter().map(|n| fmt_num(kpi_score(r, n))));
        lines.push(v);
    }
    let width = |s: &str| s.chars().count();
    let cols = lines[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| lines.iter().map(|l| width(&l[c])).max().unwrap_or(0))
        .collect();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s}{}", " ".repeat(w - width(s))))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("红榜 red: {}\n", l.red.join(", ")));
    out.push_str(&format!("黑榜 black: {}\n", l.black.join(", ")));
    out
}

/// `hub league --format csv`: one row per estate, a `<kpi>_score` column per KPI.
pub fn csv(l: &League) -> String {
    let names = kpi_names(l);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = [
        "rank",
        "site",
        "name",
        "district",
        "company",
        "status",
        "stale",
        "total",
        "grade",
        "partial",
        "previous_total",
        "previous_rank",
        "change",
        "list",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    head.extend(names.iter().map(|n| format!("{n}_score")));
    let _ = w.write_record(&head);
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &l.rows {
        let mut v = vec![
            r.rank.map(|x| x.to_string()).unwrap_or_default(),
            r.site.clone(),
            r.tags.name.clone().unwrap_or_default(),
            r.tags.district.clone().unwrap_or_default(),
            r.tags.company.clone().unwrap_or_default(),
            r.status.to_owned(),
            r.stale.to_string(),
            opt(r.total),
            r.grade.clone().unwrap_or_default(),
            r.partial.to_string(),
            opt(r.previous_total),
            r.previous_rank.map(|x| x.to_string()).unwrap_or_default(),
            opt(r.change),
            r.list.unwrap_or("").to_owned(),
        ];
        v.extend(names.iter().map(|n| opt(kpi_score(r, n))));
        let _ = w.write_record(&v);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(site: &str, total: Option<f64>, response: Option<f64>, partial: bool) -> Assessment {
        Assessment {
            site: site.into(),
            period: "2026-11".into(),
            total,
            grade: total.map(|t| if t >= 90.0 { "优" } else { "差" }.into()),
            partial,
            kpis: vec![KpiLine {
                name: "response_timeliness".into(),
                label: "响应及时率".into(),
                actual: response.map(|r| r / 20.0),
                target: 0.95,
                weight: 20.0,
                score: response,
            }],
        }
    }

    fn e(site: &str, cur: Option<Assessment>, prev: Option<Assessment>, stale: bool) -> Entry {
        Entry {
            site: site.into(),
            current: cur,
            previous: prev,
            stale,
            ..Default::default()
        }
    }

    fn rules() -> LeagueRules {
        LeagueRules {
            red_top: 1,
            red_min_score: None,
            black_bottom: 1,
            black_below: None,
            tie_kpi: "response_timeliness".into(),
        }
    }

    fn order_of(l: &League) -> Vec<(Option<usize>, &str, &str)> {
        l.rows
            .iter()
            .map(|r| (r.rank, r.site.as_str(), r.status))
            .collect()
    }

    /// Totals 95, 80 (response 18), 80 (response 20), 80 (response 20): the tie at 80 goes
    /// to the higher response score, then to the smaller site id (b < d).
    #[test]
    fn ties_go_to_the_response_kpi_then_the_site_id() {
        let entries = [
            e(
                "c",
                Some(a("c", Some(80.0), Some(18.0), false)),
                None,
                false,
            ),
            e(
                "d",
                Some(a("d", Some(80.0), Some(20.0), false)),
                None,
                false,
            ),
            e(
                "a",
                Some(a("a", Some(95.0), Some(10.0), false)),
                None,
                false,
            ),
            e(
                "b",
                Some(a("b", Some(80.0), Some(20.0), false)),
                None,
                false,
            ),
        ];
        let l = league("2026-11", &entries, &rules());
        assert_eq!(
            order_of(&l),
            [
                (Some(1), "a", "ranked"),
                (Some(2), "b", "ranked"),
                (Some(3), "d", "ranked"),
                (Some(4), "c", "ranked"),
            ]
        );
        assert_eq!(l.red, ["a"]);
        assert_eq!(l.black, ["c"]);
    }

    /// Thresholds add to the top/bottom N: red = top 1 or ≥ 90 → a (95), b (90);
    /// black = bottom 1 or < 70 → d (65, bottom), c (69.9); an estate never on both.
    #[test]
    fn red_and_black_lists_by_position_and_threshold() {
        let rules = LeagueRules {
            red_min_score: Some(90.0),
            black_below: Some(70.0),
            ..rules()
        };
        let entries = [
            e("a", Some(a("a", Some(95.0), None, false)), None, false),
            e("b", Some(a("b", Some(90.0), None, false)), None, false),
            e("c", Some(a("c", Some(69.9), None, false)), None, false),
            e("d", Some(a("d", Some(65.0), None, false)), None, false),
            e("e", Some(a("e", Some(80.0), None, false)), None, false),
        ];
        let l = league("2026-11", &entries, &rules);
        assert_eq!(l.red, ["a", "b"]);
        assert_eq!(l.black, ["c", "d"]);
        assert_eq!(l.rows[2].site, "e");
        assert_eq!(l.rows[2].list, None);
        // One estate alone: top 1 and bottom 1 — red wins, black stays empty.
        let l = league("2026-11", &entries[..1], &rules);
        assert_eq!((l.red.len(), l.black.len()), (1, 0));
    }

    /// A stale estate with a partial scorecard is listed, unranked, on no list; a stale
    /// estate with a closed scorecard ranks (marked stale); estates without a total or an
    /// assessment come last. The change is against the previous period, whose ranking
    /// counts only estates that had an assessment then.
    #[test]
    fn stale_partial_estates_are_not_ranked_and_changes_are_computed() {
        let entries = [
            e(
                "fresh",
                Some(a("fresh", Some(85.5), None, true)),
                Some(a("fresh", Some(90.0), None, false)),
                false,
            ),
            e(
                "silent",
                Some(a("silent", Some(99.0), None, true)),
                Some(a("silent", Some(70.0), None, false)),
                true,
            ),
            e(
                "closed",
                Some(a("closed", Some(60.0), None, false)),
                None,
                true,
            ),
            e("nodata", Some(a("nodata", None, None, false)), None, false),
            e("new", None, None, false),
        ];
        let l = league("2026-11", &entries, &rules());
        assert_eq!(
            order_of(&l),
            [
                (Some(1), "fresh", "ranked"),
                (Some(2), "closed", "ranked"),
                (None, "silent", "stale"),
                (None, "nodata", "no_score"),
                (None, "new", "no_assessment"),
            ]
        );
        assert_eq!(l.red, ["fresh"]);
        assert_eq!(l.black, ["closed"]);
        assert!(l.rows[1].stale && l.rows[2].list.is_none());
        let fresh = &l.rows[0];
        assert_eq!(
            (fresh.previous_total, fresh.previous_rank, fresh.change),
            (Some(90.0), Some(1), Some(-4.5))
        );
        assert_eq!(l.rows[2].previous_rank, Some(2));
        assert_eq!(l.previous_period.as_deref(), Some("2026-10"));
    }

    #[test]
    fn periods_normalize_and_step_back() {
        assert_eq!(
            normalize_period("2026-heating").as_deref(),
            Some("heating-2026")
        );
        assert_eq!(normalize_period("2026Q4").as_deref(), Some("2026Q4"));
        assert_eq!(normalize_period("2026-11").as_deref(), Some("2026-11"));
        assert_eq!(normalize_period("2026").as_deref(), Some("2026"));
        for bad in ["2026-13", "2026Q5", "26-11", "last month", "2026-1"] {
            assert_eq!(normalize_period(bad), None, "{bad}");
        }
        for (p, prev) in [
            ("2026-01", "2025-12"),
            ("2026-11", "2026-10"),
            ("2026Q1", "2025Q4"),
            ("2026Q4", "2026Q3"),
            ("heating-2026", "heating-2025"),
            ("2026", "2025"),
        ] {
            assert_eq!(previous_period(p).as_deref(), Some(prev), "{p}");
        }
    }

    #[test]
    fn table_and_csv_list_every_row() {
        let entries = [
            e(
                "a",
                Some(a("a", Some(95.0), Some(20.0), false)),
                None,
                false,
            ),
            e(
                "b",
                Some(a("b", Some(80.0), Some(10.0), false)),
                None,
                false,
            ),
        ];
        let l = league("2026-11", &entries, &rules());
        let t = table(&l);
        assert!(t.contains("红榜 red: a"), "{t}");
        assert!(t.contains("黑榜 black: b"), "{t}");
        let c = csv(&l);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 3, "{c}");
        assert!(lines[0].ends_with(",list,response_timeliness_score"), "{c}");
        assert!(lines[1].starts_with("1,a,"), "{c}");
        assert!(lines[2].contains(",black,10"), "{c}");
    }
}
