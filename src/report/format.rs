//! The report's output: `json` (for programs; its top-level keys are fixed), `table` (a
//! bilingual scorecard for a terminal) and `csv` (one row per KPI, for spreadsheets).
//!
//! Rates are fractions in [0, 1] in JSON and CSV, percentages with two decimals in the table;
//! times are seconds; a figure without data is `null` (JSON), empty (CSV) or `n/a` (table).
//! Times are RFC 3339 in the site's time zone.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::figures::Figures;
use super::period::Period;
use super::scorecard::Scorecard;
use crate::core::response::ResponseSummary;

/// Everything a report shows.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub figures: &'a Figures,
    pub scorecard: &'a Scorecard,
    pub period: &'a Period,
    /// The site's time zone.
    pub tz: &'a TimeZone,
    /// Category → its Chinese label (the profiles' `label`), for the table.
    pub category_labels: &'a BTreeMap<String, String>,
    /// More sections (`report::Sections::list`: worst devices, fire alarms), each adding its
    /// own top-level JSON keys and its table after the others; `&[]` for none.
    pub sections: &'a [&'a dyn Section],
}

/// A section of a report that renders itself (issue 14: `report::device::WorstDevices`,
/// `report::fire::FireAlarms`).
pub trait Section: std::fmt::Debug {
    /// Adds its top-level keys to the JSON document.
    fn json(&self, doc: &mut Map<String, Value>);
    /// Its table, printed after the report's own.
    fn table(&self, report: &Report<'_>) -> String;
}

/// `ms` as RFC 3339 with the offset of `tz` at that instant (`2026-11-01T00:00:00+08:00`).
pub fn rfc3339(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.display_with_offset(tz.to_offset(ts)).to_string(),
        Err(_) => ms.to_string(),
    }
}

fn response_json(r: &ResponseSummary) -> Value {
    json!({
        "timely_rate": r.timely_rate,
        "count": r.count,
        "transient": r.transient,
        "p50_s": r.p50_s,
        "p90_s": r.p90_s,
        "max_s": r.max_s,
        "pending": r.pending,
    })
}

/// A step's figures as JSON: the overall summary, with `by_category` and `by_building`.
fn step_json(
    overall: &ResponseSummary,
    by_category: &BTreeMap<String, ResponseSummary>,
    by_building: &BTreeMap<String, ResponseSummary>,
) -> Value {
    let map = |m: &BTreeMap<String, ResponseSummary>| -> Map<String, Value> {
        m.iter()
            .map(|(k, v)| (k.clone(), response_json(v)))
            .collect()
    };
    let mut v = response_json(overall);
    v["by_category"] = Value::Object(map(by_category));
    v["by_building"] = Value::Object(map(by_building));
    v
}

impl Report<'_> {
    /// The JSON document: top-level keys exactly `site`, `from`, `to`, `intactness`,
    /// `response`, `arrival`, `repair`, `heating`, `score` (the three timeliness steps have
    /// the same inner shape). `from`/`to` are what the figures cover (`to` is the
    /// time of the report when the period has not ended); `score.period` gives the period's
    /// label and nominal bounds, `score.partial` whether it had ended.
    pub fn json(&self) -> Value {
        let f = self.figures;
        let s = self.scorecard;
        let rates = |m: &BTreeMap<String, super::figures::Intactness>| -> Map<String, Value> {
            m.iter().map(|(k, v)| (k.clone(), json!(v.rate))).collect()
        };
        let heating_by_building: Map<String, Value> = f
            .heating_by_building
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"compliance": v.compliance, "coverage": v.coverage}),
                )
            })
            .collect();
        let response = step_json(
            &f.response,
            &f.response_by_category,
            &f.response_by_building,
        );
        let step =
            |s: &super::figures::StepFigures| step_json(&s.overall, &s.by_category, &s.by_building);
        let mut doc = json!({
            "site": f.site,
            "from": rfc3339(f.from_ms, self.tz),
            "to": rfc3339(f.to_ms, self.tz),
            "intactness": {
                "overall": f.intactness.rate,
                "by_category": rates(&f.intactness_by_category),
                "by_building": rates(&f.intactness_by_building),
            },
            "response": response,
            "arrival": step(&f.arrival),
            "repair": step(&f.repair),
            "heating": {
                "compliance": f.heating.compliance,
                "coverage": f.heating.coverage,
                "by_building": heating_by_building,
            },
            "score": {
                "total": s.total,
                "grade": s.grade,
                "kpis": s.kpis.iter().map(|k| json!({
                    "name": k.name,
                    "label": k.label,
                    "actual": k.actual,
                    "target": k.target,
                    "weight": k.weight,
                    "score": k.score,
                })).collect::<Vec<_>>(),
                "partial": s.partial,
                "period": {
                    "label": self.period.label,
                    "from": rfc3339(self.period.from_ms, self.tz),
                    "to": rfc3339(self.period.to_ms, self.tz),
                },
            },
        });
        if let Value::Object(m) = &mut doc {
            self.sections.iter().for_each(|s| s.json(m));
        }
        doc
    }

    /// CSV: a header and one row per KPI.
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let from = rfc3339(self.figures.from_ms, self.tz);
        let to = rfc3339(self.figures.to_ms, self.tz);
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        // Writing into a Vec cannot fail.
        let _ = w.write_record([
            "site", "period", "from", "to", "kpi", "label", "actual", "target", "weight", "score",
            "partial",
        ]);
        for k in &self.scorecard.kpis {
            let _ = w.write_record([
                self.figures.site.as_str(),
                self.period.label.as_str(),
                &from,
                &to,
                &k.name,
                &k.label,
                &opt(k.actual),
                &k.target.to_string(),
                &k.weight.to_string(),
                &opt(k.score),
                if self.scorecard.partial {
                    "true"
                } else {
                    "false"
                },
            ]);
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bilingual scorecard for a terminal, columns aligned for CJK double-width text.
    pub fn table(&self) -> String {
        let f = self.figures;
        let s = self.scorecard;
        let mut out = String::new();
        let _ = writeln!(out, "考核评分 Assessment · 站点 site {}", f.site);
        let _ = writeln!(
            out,
            "周期 Period  {}  [{}, {})",
            self.period.label,
            rfc3339(self.period.from_ms, self.tz),
            rfc3339(self.period.to_ms, self.tz)
        );
        if s.partial {
            let _ = writeln!(
                out,
                "            partial / 未结束: figures up to 数据截至 {}",
                rfc3339(f.to_ms, self.tz)
            );
        }
        out.push('\n');
        let head = [
            "指标 KPI",
            "实际 Actual",
            "目标 Target",
            "权重 Weight",
            "得分 Score",
        ];
        let rows: Vec<[String; 5]> = s
            .kpis
            .iter()
            .map(|k| {
                [
                    format!("{} {}", k.label, k.name),
                    pct(k.actual),
                    pct(Some(k.target)),
                    num(k.weight),
                    k.score.map(|x| format!("{x:.2}")).unwrap_or_else(na),
                ]
            })
            .collect();
        let w0 = rows
            .iter()
            .map(|r| width(&r[0]))
            .chain([width(head[0])])
            .max()
            .unwrap_or(0);
        let wn = |i: usize| {
            rows.iter()
                .map(|r| width(&r[i]))
                .chain([width(head[i])])
                .max()
                .unwrap_or(0)
        };
        let ws = [w0, wn(1), wn(2), wn(3), wn(4)];
        let line = |cells: [&str; 5]| {
            let mut l = pad_right(cells[0], ws[0]);
            for i in 1..5 {
                l.push_str("  ");
                l.push_str(&pad_left(cells[i], ws[i]));
            }
            l.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(head));
        let _ = writeln!(out, "{}", "-".repeat(ws.iter().sum::<usize>() + 8));
        for r in &rows {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
        let _ = writeln!(out, "{}", "-".repeat(ws.iter().sum::<usize>() + 8));
        let _ = writeln!(
            out,
            "总分 Total   {}",
            s.total
                .map(|t| format!("{t:.2} / 100"))
                .unwrap_or_else(|| "n/a (no KPI has data / 无数据)".into())
        );
        let _ = writeln!(out, "等级 Grade   {}", s.grade.clone().unwrap_or_else(na));
        if s.kpis.iter().any(|k| k.score.is_none()) && s.total.is_some() {
            let _ = writeln!(
                out,
                "(n/a: no data in the period / 本期无数据; its weight is left out and the total is rescaled to 100)"
            );
        }

        out.push('\n');
        let label = |c: &str| match self.category_labels.get(c) {
            Some(l) => format!("{l} {c}"),
            None => c.to_owned(),
        };
        let (ni, nt, nr) = f.instant;
        let _ = writeln!(
            out,
            "完好率 Intactness  {}  (instant 即时 {ni}/{nt} = {})",
            pct(f.intactness.rate),
            pct(nr)
        );
        let mut sub: Vec<(String, String)> = f
            .intactness_by_category
            .iter()
            .map(|(c, i)| (label(c), pct(i.rate)))
            .collect();
        sub.extend(
            f.intactness_by_building
                .iter()
                .map(|(b, i)| (b.clone(), pct(i.rate))),
        );
        let wsub = sub.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
        for (k, v) in &sub {
            let _ = writeln!(out, "  {}  {}", pad_right(k, wsub), pad_left(v, 7));
        }
        let secs = |v: Option<f64>| v.map(|x| format!("{x:.0} s")).unwrap_or_else(na);
        for (name, r) in [
            ("响应 Response    ", &f.response),
            ("到场 Arrival     ", &f.arrival.overall),
            ("修复 Repair      ", &f.repair.overall),
        ] {
            let _ = writeln!(
                out,
                "{name}  {} timely 及时 of {} counted, {} transient 瞬时, {} pending 未到期; p50 {}, p90 {}, max {}",
                pct(r.timely_rate),
                r.count,
                r.transient,
                r.pending,
                secs(r.p50_s),
                secs(r.p90_s),
                secs(r.max_s)
            );
        }
        let _ = writeln!(
            out,
            "供暖 Heating       compliance 达标率 {}, coverage 覆盖率 {}",
            pct(f.heating.compliance),
            pct(f.heating.coverage)
        );
        self.sections
            .iter()
            .for_each(|s| out.push_str(&s.table(self)));
        out
    }
}

pub(super) fn na() -> String {
    "n/a".into()
}

/// A fraction as a percentage with two decimals.
pub(super) fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_else(na)
}

/// `25` or `12.50`.
fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Terminal columns of `s`: CJK and full-width characters take two.
pub(super) fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

pub(super) fn pad_right(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

pub(super) fn pad_left(s: &str, w: usize) -> String {
    format!("{}{s}", " ".repeat(w.saturating_sub(width(s))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_grades, default_kpis};
    use crate::core::kpi::{OfflinePolicy, StateTime};
    use crate::core::season::Season;
    use crate::report::figures::{Heating, Intactness};
    use crate::report::scorecard::scorecard;

    const H: i64 = 3_600_000;

    fn sample() -> (Figures, Period) {
        let period = Period::parse("2026-11", &Season::beijing()).unwrap();
        let mut f = Figures {
            site: "huafu".into(),
            from_ms: period.from_ms,
            to_ms: period.from_ms + 14 * 24 * H + 10 * H,
            partial: true,
            ..Default::default()
        };
        let time = StateTime {
            intact: 99 * H,
            fault: H,
            ..Default::default()
        };
        let i = Intactness {
            rate: Some(0.99),
            devices: 1,
            time,
        };
        f.intactness = i.clone();
        f.intactness_by_category
            .insert("elevator".into(), i.clone());
        f.intactness_by_building.insert("1号楼".into(), i);
        f.instant = (13, 14, Some(13.0 / 14.0));
        f.response.count = 4;
        f.response.timely = 3;
        f.response.transient = 2;
        f.response.timely_rate = Some(0.75);
        f.response.p50_s = Some(45.0);
        f.response.p90_s = Some(200.0);
        f.response.max_s = Some(200.0);
        f.response_by_category
            .insert("elevator".into(), f.response.clone());
        f.heating = Heating {
            compliance: Some(0.98),
            coverage: Some(0.5),
            ..Default::default()
        };
        f.heating_by_building
            .insert("1号楼".into(), f.heating.clone());
        (f, period)
    }

    fn with<T>(f: &Figures, period: &Period, g: impl FnOnce(Report<'_>) -> T) -> T {
        let s = scorecard(
            f,
            &default_kpis(),
            &default_grades(),
            OfflinePolicy::NotIntact,
        );
        let labels: BTreeMap<String, String> = [("elevator".to_owned(), "电梯".to_owned())].into();
        let tz = Season::beijing().tz;
        g(Report {
            figures: f,
            scorecard: &s,
            period,
            tz: &tz,
            category_labels: &labels,
            sections: &[],
        })
    }

    #[test]
    fn json_has_exactly_the_agreed_keys() {
        let (f, p) = sample();
        let v = with(&f, &p, |r| r.json());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expect = [
            "site",
            "from",
            "to",
            "intactness",
            "response",
            "arrival",
            "repair",
            "heating",
            "score",
        ];
        expect.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expect);
        assert_eq!(v["site"], "huafu");
        assert_eq!(v["from"], "2026-11-01T00:00:00+08:00");
        assert_eq!(v["to"], "2026-11-15T10:00:00+08:00");
        assert_eq!(v["intactness"]["overall"], 0.99);
        assert_eq!(v["intactness"]["by_category"]["elevator"], 0.99);
        assert_eq!(v["intactness"]["by_building"]["1号楼"], 0.99);
        // The three timeliness steps have the same inner shape.
        for step in ["response", "arrival", "repair"] {
            let r = &v[step];
            for k in [
                "timely_rate",
                "count",
                "transient",
                "pending",
                "p50_s",
                "p90_s",
                "max_s",
                "by_category",
                "by_building",
            ] {
                assert!(r.get(k).is_some(), "{step}.{k}");
            }
            assert_eq!(r.as_object().unwrap().len(), 9, "{step}");
        }
        let r = &v["response"];
        assert_eq!(r["by_category"]["elevator"]["timely_rate"], 0.75);
        assert_eq!(v["heating"]["by_building"]["1号楼"]["coverage"], 0.5);
        let s = &v["score"];
        assert_eq!(s["partial"], true);
        assert_eq!(s["period"]["label"], "2026-11");
        assert_eq!(s["period"]["to"], "2026-12-01T00:00:00+08:00");
        let k0 = s["kpis"][0].as_object().unwrap();
        let mut kk: Vec<&str> = k0.keys().map(String::as_str).collect();
        kk.sort_unstable();
        assert_eq!(kk, ["actual", "label", "name", "score", "target", "weight"]);
        // No fire equipment in the figures: null, not 0.
        assert_eq!(s["kpis"][0]["actual"], Value::Null);
        assert_eq!(s["kpis"][4]["actual"], 0.98);
        assert_eq!(s["kpis"][4]["score"], 20.0);
    }

    #[test]
    fn csv_has_a_row_per_kpi() {
        let (f, p) = sample();
        let text = with(&f, &p, |r| r.csv());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "site,period,from,to,kpi,label,actual,target,weight,score,partial"
        );
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[1],
            "huafu,2026-11,2026-11-01T00:00:00+08:00,2026-11-15T10:00:00+08:00,fire_intactness,消防设施设备完好率,,1,20,,true"
        );
        assert_eq!(
            lines[5],
            "huafu,2026-11,2026-11-01T00:00:00+08:00,2026-11-15T10:00:00+08:00,heating_compliance,室温合格率,0.98,0.97,20,20,true"
        );
    }

    #[test]
    fn table_is_bilingual_and_aligned() {
        let (f, p) = sample();
        let t = with(&f, &p, |r| r.table());
        for n in [
            "考核评分 Assessment",
            "周期 Period  2026-11  [2026-11-01T00:00:00+08:00, 2026-12-01T00:00:00+08:00)",
            "partial / 未结束",
            "消防设施设备完好率 fire_intactness",
            "公共机电设备完好率 electromechanical_intactness",
            "响应及时率 response_timeliness",
            "零修急修及时率 repair_timeliness",
            "室温合格率 heating_compliance",
            "到场及时率 arrival_timeliness",
            "98.00%",
            "97.00%",
            "n/a",
            "电梯 elevator",
            "instant 即时 13/14 = 92.86%",
            "75.00% timely",
            "p50 45 s",
        ] {
            assert!(t.contains(n), "missing {n:?} in:\n{t}");
        }
        // The KPI rows end at the same terminal column.
        let rows: Vec<&str> = t.lines().filter(|l| l.contains("率 ")).take(4).collect();
        let ends: Vec<usize> = rows.iter().map(|l| width(l)).collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}\n{t}");
        // A closed period says nothing about being partial.
        let mut f2 = f.clone();
        f2.partial = false;
        let t = with(&f2, &p, |r| r.table());
        assert!(!t.contains("未结束"), "{t}");
    }

    #[test]
    fn widths_count_cjk_as_two_columns() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("完好率"), 6);
        assert_eq!(pad_right("电梯", 6), "电梯  ");
    }
}
