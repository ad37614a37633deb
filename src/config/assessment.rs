//! `[assessment]`: the scorecard (考核评分) of DESIGN §4 — KPIs with targets, weights and
//! deductions, grade bands, how offline time counts, and how often the periodic figures are
//! written.
//!
//! The defaults, each with its source (every number is configurable):
//! - `fire_intactness` 消防设施设备完好率: intactness of `fire_equipment`, target 100 %
//!   (property-service plans and fire-safety rules ask for fire installations in working
//!   order at all times; GB 25201-2010 建筑消防设施的维护管理).
//! - `electromechanical_intactness` 公共机电设备完好率: intactness of `elevator`,
//!   `access_gate` and `heating_loop` together, target 100 % (the property-service plans'
//!   commitment; a city's grading rules may set 98 %).
//! - `response_timeliness` 响应及时率: response timeliness of all alarms, target 99 %.
//! - `repair_timeliness` 零修急修及时率: repair timeliness of all alarms (cleared within the
//!   class's repair target), target 99 % (the 零修急修及时率 ≥ 99 % of the property-service
//!   grading standards).
//! - `heating_compliance` 室温合格率: heating compliance, target 97 % (city heating rules grade
//!   the indoor-temperature pass rate of a season; 97 % is a common target).
//! - `arrival_timeliness` 到场及时率: arrival timeliness, target 99 %, weight 0 (reported, not
//!   scored, unless a site weights it: DESIGN §4).
//! - the five scored KPIs weigh 20 each (they make 100), `deduct_per_point` 5 (5 points lost
//!   per percentage point short), grades 优秀 ≥ 90, 良好 ≥ 80, 合格 ≥ 60, else 不合格.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{NumberOrText, RawAssessment, RawGrade, RawKpi};
use super::Errors;
use crate::core::kpi::OfflinePolicy;
use crate::core::response::Step;
use crate::model::rules::Severity;
use crate::model::{Inventory, Profile};

/// The `[assessment]` section, built.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentSettings {
    /// How offline time counts in intactness (`offline = "not_intact" | "excluded"`).
    pub offline: OfflinePolicy,
    /// How often the periodic `intactness`, `response` and `heating` points are written.
    pub kpi_interval: Duration,
    /// The scorecard's KPIs, in the order given.
    pub kpis: Vec<KpiSettings>,
    /// Grade bands, highest `min` first; the last has `min = 0`.
    pub grades: Vec<Grade>,
}

impl Default for AssessmentSettings {
    fn default() -> Self {
        AssessmentSettings {
            offline: OfflinePolicy::NotIntact,
            kpi_interval: Duration::from_secs(60),
            kpis: default_kpis(),
            grades: default_grades(),
        }
    }
}

/// One KPI of the scorecard.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiSettings {
    /// `[a-z_]+`; the `kpi` tag of `assessment` points.
    pub name: String,
    /// The Chinese name assessors use (消防设施设备完好率).
    pub label: String,
    pub figure: KpiFigure,
    /// A fraction in (0, 1].
    pub target: f64,
    /// Points of the KPI when on target (> 0).
    pub weight: f64,
    /// Points lost per percentage point short of the target (≥ 0).
    pub deduct_per_point: f64,
}

/// Which figure a KPI grades, and of what.
#[derive(Debug, Clone, PartialEq)]
pub enum KpiFigure {
    /// Intactness of these categories' devices together (empty: all), or of one building.
    Intactness {
        categories: Vec<String>,
        building: Option<String>,
    },
    /// Timeliness of one step (response 响应, arrival 到场, repair 修复) of these categories'
    /// alarms (empty: all), of one severity (or all).
    Response {
        categories: Vec<String>,
        severity: Option<String>,
        step: Step,
    },
    /// Heating compliance of the site.
    Heating,
}

/// A grade band: a total at or above `min` gets `name` (the first band that fits, from the top).
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    pub name: String,
    pub min: f64,
}

/// The default KPIs (see the module docs for their sources).
pub fn default_kpis() -> Vec<KpiSettings> {
    let kpi = |name: &str, label: &str, figure: KpiFigure, target: f64, weight: f64| KpiSettings {
        name: name.into(),
        label: label.into(),
        figure,
        target,
        weight,
        deduct_per_point: 5.0,
    };
    let cats = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let step = |step: Step| KpiFigure::Response {
        categories: Vec::new(),
        severity: None,
        step,
    };
    vec![
        kpi(
            "fire_intactness",
            "消防设施设备完好率",
            KpiFigure::Intactness {
                categories: cats(&["fire_equipment"]),
                building: None,
            },
            1.0,
            20.0,
        ),
        kpi(
            "electromechanical_intactness",
            "公共机电设备完好率",
            KpiFigure::Intactness {
                categories: cats(&["elevator", "access_gate", "heating_loop"]),
                building: None,
            },
            1.0,
            20.0,
        ),
        kpi(
            "response_timeliness",
            "响应及时率",
            step(Step::Response),
            0.99,
            20.0,
        ),
        kpi(
            "repair_timeliness",
            "零修急修及时率",
            step(Step::Repair),
            0.99,
            20.0,
        ),
        kpi(
            "heating_compliance",
            "室温合格率",
            KpiFigure::Heating,
            0.97,
            20.0,
        ),
        // Reported, not weighted, unless a site weights it (`[[assessment.kpi]]`).
        kpi(
            "arrival_timeliness",
            "到场及时率",
            step(Step::Arrival),
            0.99,
            0.0,
        ),
    ]
}

/// 优秀 ≥ 90, 良好 ≥ 80, 合格 ≥ 60, else 不合格.
pub fn default_grades() -> Vec<Grade> {
    [
        ("优秀", 90.0),
        ("良好", 80.0),
        ("合格", 60.0),
        ("不合格", 0.0),
    ]
    .into_iter()
    .map(|(name, min)| Grade {
        name: name.into(),
        min,
    })
    .collect()
}

pub(super) fn build_assessment(
    a: &RawAssessment,
    profiles: &BTreeMap<String, Arc<Profile>>,
    inventory: &Inventory,
    errs: &mut Errors,
) -> AssessmentSettings {
    let offline = match a.offline.as_str() {
        "not_intact" => OfflinePolicy::NotIntact,
        "excluded" => OfflinePolicy::Excluded,
        other => {
            errs.push(
                "assessment.offline",
                format!("`{other}` is not an offline policy; valid: not_intact (offline time counts as not intact, the default), excluded (offline time is left out like maintenance)"),
            );
            OfflinePolicy::NotIntact
        }
    };
    let kpi_interval = errs.duration("assessment.kpi_interval", &a.kpi_interval);
    if kpi_interval.is_zero() && !errs.has_key("assessment.kpi_interval") {
        errs.push("assessment.kpi_interval", "must be more than 0, e.g. `60s`");
    }
    let kpis = if a.kpi.is_empty() {
        default_kpis()
    } else {
        let mut out: Vec<KpiSettings> = Vec::new();
        for (i, k) in a.kpi.iter().enumerate() {
            if let Some(kpi) = build_kpi(i, k, profiles, inventory, errs) {
                if out.iter().any(|o| o.name == kpi.name) {
                    errs.push(
                        format!("assessment.kpi[{i}].name"),
                        format!(
                            "`{}` is used by an earlier KPI; give each KPI its own name",
                            kpi.name
                        ),
                    );
                } else {
                    out.push(kpi);
                }
            }
        }
        out
    };
    let grades = if a.grades.is_empty() {
        default_grades()
    } else {
        build_grades(&a.grades, errs)
    };
    AssessmentSettings {
        offline,
        kpi_interval,
        kpis,
        grades,
    }
}

fn build_kpi(
    i: usize,
    k: &RawKpi,
    profiles: &BTreeMap<String, Arc<Profile>>,
    inventory: &Inventory,
    errs: &mut Errors,
) -> Option<KpiSettings> {
    let key = |f: &str| format!("assessment.kpi[{i}].{f}");
    let before = errs.len();
    if k.name.is_empty() {
        errs.push(
            key("name"),
            "is missing; give the KPI a name such as `fire_intactness`",
        );
    } else if !k.name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        errs.push(
            key("name"),
            format!(
                "`{}` is not a KPI name; use lower-case letters and `_`, e.g. `fire_intactness`",
                k.name
            ),
        );
    }
    if k.label.trim().is_empty() {
        errs.push(
            key("label"),
            "is missing; give the name assessors use, e.g. \"消防设施设备完好率\"",
        );
    } else if k.label.chars().any(char::is_control) {
        errs.push(
            key("label"),
            "contains a control character (a newline?); write it on one line",
        );
    }
    let categories = k.category.as_ref().map(|c| c.to_vec()).unwrap_or_default();
    for (j, c) in categories.iter().enumerate() {
        if !profiles.contains_key(c) {
            let k = match &k.category {
                Some(super::raw::OneOrMany::Many(_)) => key(&format!("category[{j}]")),
                _ => key("category"),
            };
            errs.push(
                k,
                format!(
                    "unknown category `{c}`; categories (profiles): {}",
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let not_here = |errs: &mut Errors, field: &str, figure: &str| {
        errs.push(key(field), format!("does not apply to figure `{figure}`"));
    };
    let figure = match k.figure.as_str() {
        "intactness" => {
            if k.severity.is_some() {
                not_here(errs, "severity", "intactness");
            }
            if let Some(b) = &k.building {
                if !categories.is_empty() {
                    errs.push(
                        key("building"),
                        "is given together with `category`; a KPI over one building's devices of some categories is not supported in this version: give either `category` or `building`",
                    );
                } else if !inventory.devices().iter().any(|d| &d.building == b) {
                    let mut known: Vec<&str> = inventory
                        .devices()
                        .iter()
                        .map(|d| d.building.as_str())
                        .collect();
                    known.sort_unstable();
                    known.dedup();
                    errs.push(
                        key("building"),
                        format!(
                            "no device is in building `{b}`; buildings: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
            KpiFigure::Intactness {
                categories: categories.clone(),
                building: k.building.clone(),
            }
        }
        f @ ("response" | "arrival" | "repair") => {
            if k.building.is_some() {
                not_here(errs, "building", f);
            }
            if let Some(s) = &k.severity {
                if Severity::parse(s).is_none() {
                    errs.push(
                        key("severity"),
                        format!("`{s}` is not a severity; valid: critical, major, minor"),
                    );
                }
            }
            KpiFigure::Response {
                categories: categories.clone(),
                severity: k.severity.clone(),
                step: match f {
                    "arrival" => Step::Arrival,
                    "repair" => Step::Repair,
                    _ => Step::Response,
                },
            }
        }
        "heating" => {
            for (field, set) in [
                ("category", k.category.is_some()),
                ("building", k.building.is_some()),
                ("severity", k.severity.is_some()),
            ] {
                if set {
                    not_here(errs, field, "heating");
                }
            }
            KpiFigure::Heating
        }
        "" => {
            errs.push(
                key("figure"),
                "is missing; valid: intactness, response, arrival, repair, heating",
            );
            KpiFigure::Heating
        }
        other => {
            errs.push(
                key("figure"),
                format!("`{other}` is not a figure; valid: intactness (设施设备完好率), response (响应及时率), arrival (到场及时率), repair (零修急修及时率), heating (供暖达标率)"),
            );
            KpiFigure::Heating
        }
    };
    let target = match &k.target {
        None => {
            errs.push(
                key("target"),
                "is missing; write a fraction such as 0.99 or a percentage such as \"99%\"",
            );
            1.0
        }
        Some(t) => match parse_target(t) {
            Ok(t) => t,
            Err(e) => {
                errs.push(key("target"), e);
                1.0
            }
        },
    };
    let weight = k.weight.unwrap_or(0.0);
    if k.weight.is_none() {
        errs.push(
            key("weight"),
            "is missing; give the KPI's points when on target, e.g. 25",
        );
    } else if !(weight.is_finite() && weight >= 0.0) {
        errs.push(
            key("weight"),
            format!("`{weight}` must be a number of points, 0 or more (0: reported, not scored), e.g. 20"),
        );
    }
    let deduct_per_point = k.deduct_per_point.unwrap_or(5.0);
    if !(deduct_per_point.is_finite() && deduct_per_point >= 0.0) {
        errs.push(
            key("deduct_per_point"),
            format!("`{deduct_per_point}` must be 0 or more: points lost per percentage point short of the target, e.g. 5"),
        );
    }
    (errs.len() == before).then(|| KpiSettings {
        name: k.name.clone(),
        label: k.label.trim().to_owned(),
        figure,
        target,
        weight,
        deduct_per_point,
    })
}

/// `0.99`, `1`, `"99%"`, `"99.5 %"` → a fraction in (0, 1].
fn parse_target(t: &NumberOrText) -> Result<f64, String> {
    let (v, shown) = match t {
        NumberOrText::Number(n) => (Some(*n), n.to_string()),
        NumberOrText::Text(s) => {
            let v = s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .map(|p| p / 100.0)
                .or_else(|| s.trim().parse::<f64>().ok());
            (v, s.clone())
        }
    };
    match v {
        Some(v) if v.is_finite() && v > 0.0 && v <= 1.0 => Ok(v),
        Some(v) if v.is_finite() && v > 1.0 && v <= 100.0 => Err(format!(
            "`{shown}` is more than 1; write a fraction (0.99) or a percentage string (\"99%\")"
        )),
        _ => Err(format!(
            "`{shown}` is not a target; write a fraction in (0, 1] such as 0.99, or a percentage such as \"99%\""
        )),
    }
}

fn build_grades(list: &[RawGrade], errs: &mut Errors) -> Vec<Grade> {
    let mut out: Vec<Grade> = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let key = |f: &str| format!("assessment.grades[{i}].{f}");
        let before = errs.len();
        if g.name.trim().is_empty() {
            errs.push(
                key("name"),
                "is missing; give the grade's name, e.g. \"优秀\"",
            );
        } else if out.iter().any(|o| o.name == g.name) {
            errs.push(
                key("name"),
                format!("`{}` is used by an earlier grade", g.name),
            );
        }
        let min = g.min.unwrap_or(f64::NAN);
        if g.min.is_none() {
            errs.push(
                key("min"),
                "is missing; give the lowest total of the grade, e.g. 90",
            );
        } else if !(min.is_finite() && (0.0..=100.0).contains(&min)) {
            errs.push(key("min"), format!("`{min}` must be between 0 and 100"));
        } else if out.iter().any(|o| o.min == min) {
            errs.push(
                key("min"),
                format!("`{min}` is the minimum of an earlier grade; each grade needs its own"),
            );
        }
        if errs.len() == before {
            out.push(Grade {
                name: g.name.trim().to_owned(),
                min,
            });
        }
    }
    out.sort_by(|a, b| b.min.total_cmp(&a.min));
    if out.len() == list.len() && out.last().is_some_and(|g| g.min != 0.0) {
        errs.push(
            "assessment.grades",
            "no grade has min = 0; add the lowest band (e.g. name = \"不合格\", min = 0) so every total gets a grade",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_text, messages};
    use super::*;

    fn errors(toml: &str) -> String {
        messages(load_text(toml, &[], &[]).expect_err("invalid")).join("\n")
    }

    fn assert_has(all: &str, needles: &[&str]) {
        for n in needles {
            assert!(all.contains(n), "missing {n:?} in:\n{all}");
        }
    }

    #[test]
    fn defaults_follow_design_section_4() {
        let cfg = load_text("[gateway]\nsite = \"a\"\n", &[], &[]).expect("valid");
        let a = &cfg.assessment;
        assert_eq!(*a, AssessmentSettings::default());
        assert_eq!(a.offline, OfflinePolicy::NotIntact);
        assert_eq!(a.kpi_interval, Duration::from_secs(60));
        let names: Vec<(&str, &str, f64, f64, f64)> = a
            .kpis
            .iter()
            .map(|k| {
                (
                    k.name.as_str(),
                    k.label.as_str(),
                    k.target,
                    k.weight,
                    k.deduct_per_point,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("fire_intactness", "消防设施设备完好率", 1.0, 20.0, 5.0),
                (
                    "electromechanical_intactness",
                    "公共机电设备完好率",
                    1.0,
                    20.0,
                    5.0
                ),
                ("response_timeliness", "响应及时率", 0.99, 20.0, 5.0),
                ("repair_timeliness", "零修急修及时率", 0.99, 20.0, 5.0),
                ("heating_compliance", "室温合格率", 0.97, 20.0, 5.0),
                // DESIGN §4: arrival timeliness is reported and may be weighted.
                ("arrival_timeliness", "到场及时率", 0.99, 0.0, 5.0),
            ]
        );
        assert_eq!(
            a.kpis[1].figure,
            KpiFigure::Intactness {
                categories: vec![
                    "elevator".into(),
                    "access_gate".into(),
                    "heating_loop".into()
                ],
                building: None
            }
        );
        let g: Vec<(&str, f64)> = a.grades.iter().map(|g| (g.name.as_str(), g.min)).collect();
        assert_eq!(
            g,
            [
                ("优秀", 90.0),
                ("良好", 80.0),
                ("合格", 60.0),
                ("不合格", 0.0)
            ]
        );
        // Every default category is a built-in profile.
        for k in &a.kpis {
            if let KpiFigure::Intactness { categories, .. } = &k.figure {
                for c in categories {
                    assert!(cfg.profiles.contains_key(c), "{c}");
                }
            }
        }
    }

    /// The commented-out `[assessment]` of the shipped example, uncommented, is the default.
    #[test]
    fn the_documented_example_is_the_default() {
        let text = include_str!("../../configs/gateway.toml");
        let i = text.find("[assessment]").expect("section");
        let j = i + text[i..].find("# Planned maintenance").expect("end");
        let block: String = text[i..j]
            .lines()
            .map(|l| {
                let keys = [
                    "[[assessment",
                    "name ",
                    "label ",
                    "figure ",
                    "category ",
                    "target ",
                    "weight ",
                    "deduct_per_point ",
                    "min ",
                ];
                match l.strip_prefix("# ") {
                    Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
                    _ => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("\n[[assessment.kpi]]\nname = \"fire_intactness\""),
            "{block}"
        );
        let cfg = load_text(&block, &[], &[]).expect("valid");
        assert_eq!(cfg.assessment, AssessmentSettings::default());
    }

    #[test]
    fn kpis_and_grades_are_read() {
        let cfg = load_text(
            r#"
[gateway]
site = "a"
[[devices]]
id = "E-1"
name = "1号梯"
building = "1号楼"
category = "elevator"
[assessment]
offline = "excluded"
kpi_interval = "30s"
[[assessment.kpi]]
name = "lift_intactness"
label = "电梯完好率"
figure = "intactness"
category = "elevator"
target = "98%"
weight = 40
deduct_per_point = 2.5
[[assessment.kpi]]
name = "building_one"
label = "1号楼完好率"
figure = "intactness"
building = "1号楼"
target = 0.95
weight = 20
[[assessment.kpi]]
name = "fire_response"
label = "火警响应及时率"
figure = "response"
category = ["fire_equipment"]
severity = "critical"
target = 1
weight = 40
[[assessment.grades]]
name = "合格"
min = 60
[[assessment.grades]]
name = "不合格"
min = 0
[[assessment.grades]]
name = "优"
min = 85.5
"#,
            &[],
            &[],
        )
        .expect("valid");
        let a = &cfg.assessment;
        assert_eq!(a.offline, OfflinePolicy::Excluded);
        assert_eq!(a.kpi_interval, Duration::from_secs(30));
        assert_eq!(a.kpis.len(), 3);
        assert_eq!(a.kpis[0].target, 0.98);
        assert_eq!((a.kpis[0].weight, a.kpis[0].deduct_per_point), (40.0, 2.5));
        assert_eq!(
            a.kpis[1].figure,
            KpiFigure::Intactness {
                categories: vec![],
                building: Some("1号楼".into())
            }
        );
        assert_eq!(a.kpis[1].deduct_per_point, 5.0);
        assert_eq!(
            a.kpis[2].figure,
            KpiFigure::Response {
                categories: vec!["fire_equipment".into()],
                severity: Some("critical".into()),
                step: Step::Response,
            }
        );
        assert_eq!(a.kpis[2].target, 1.0);
        let g: Vec<(&str, f64)> = a.grades.iter().map(|g| (g.name.as_str(), g.min)).collect();
        assert_eq!(g, [("优", 85.5), ("合格", 60.0), ("不合格", 0.0)]);
    }

    #[test]
    fn every_mistake_is_named() {
        let all = errors(
            r#"
[gateway]
site = "a"
[[devices]]
id = "E-1"
name = "1号梯"
building = "1号楼"
category = "elevator"
[assessment]
offline = "ignored"
kpi_interval = "0s"
[[assessment.kpi]]
name = "Fire-KPI"
figure = "uptime"
target = 99
weight = -1
[[assessment.kpi]]
name = "b"
label = "x"
figure = "intactness"
category = ["elevator", "lifts"]
building = "1号楼"
target = "0%"
weight = 10
deduct_per_point = -1
[[assessment.kpi]]
name = "c"
label = "y"
figure = "heating"
severity = "high"
target = "97%"
weight = 10
[[assessment.kpi]]
name = "d"
label = "z"
figure = "response"
severity = "high"
building = "2号楼"
target = 0.9
weight = 10
[[assessment.kpi]]
name = "e"
label = "w"
figure = "intactness"
building = "9号楼"
target = 0.9
weight = 10
[[assessment.grades]]
name = "好"
min = 120
[[assessment.grades]]
name = "中"
min = 50
"#,
        );
        assert_has(
            &all,
            &[
                "assessment.offline: `ignored` is not an offline policy; valid: not_intact",
                "assessment.kpi_interval: must be more than 0",
                "assessment.kpi[0].name: `Fire-KPI` is not a KPI name",
                "assessment.kpi[0].label: is missing",
                "assessment.kpi[0].figure: `uptime` is not a figure; valid: intactness",
                "assessment.kpi[0].target: `99` is more than 1; write a fraction (0.99) or a percentage string (\"99%\")",
                "assessment.kpi[0].weight: `-1` must be a number of points, 0 or more",
                "assessment.kpi[1].category[1]: unknown category `lifts`; categories (profiles): access_gate",
                "assessment.kpi[1].building: is given together with `category`; a KPI over one building's devices of some categories is not supported in this version",
                "assessment.kpi[1].target: `0%` is not a target",
                "assessment.kpi[1].deduct_per_point: `-1` must be 0 or more",
                "assessment.kpi[2].severity: does not apply to figure `heating`",
                "assessment.kpi[3].severity: `high` is not a severity; valid: critical, major, minor",
                "assessment.kpi[3].building: does not apply to figure `response`",
                "assessment.kpi[4].building: no device is in building `9号楼`; buildings: 1号楼",
                "assessment.grades[0].min: `120` must be between 0 and 100",
            ],
        );
        let all = errors("[[assessment.grades]]\nname = \"好\"\nmin = 50\n[[assessment.kpi]]\nname = \"a\"\nlabel = \"x\"\nfigure = \"heating\"\ntarget = 0.9\nweight = 1\n[[assessment.kpi]]\nname = \"a\"\nlabel = \"y\"\nfigure = \"heating\"\ntarget = 0.9\nweight = 1\ncolour = 1\n");
        assert_has(
            &all,
            &[
                "assessment.grades: no grade has min = 0",
                "assessment.kpi[1].name: `a` is used by an earlier KPI",
                "assessment.kpi[1].colour: unknown key; valid keys here: name, label, figure, category, building, severity, target, weight, deduct_per_point",
            ],
        );
    }

    #[test]
    fn per_site_heating_overrides_inherit_and_are_checked() {
        let cfg = load_text(
            "[gateway]\nsite = \"a\"\n[heating]\nmin_indoor_c = 18\n[heating.sites.harbin]\nseason_start = \"10-20\"\nseason_end = \"04-20\"\ntimezone = \"Asia/Harbin\"\n[heating.sites.b]\nmin_indoor_c = 16\n",
            &[],
            &[],
        )
        .expect("valid");
        let h = &cfg.heating;
        let (s, min) = h.for_site("harbin");
        assert_eq!(
            (
                s.start.to_string(),
                s.end.to_string(),
                s.tz_name.as_str(),
                min
            ),
            ("10-20".into(), "04-20".into(), "Asia/Harbin", 18.0)
        );
        let (s, min) = h.for_site("b");
        assert_eq!((s, min), (&h.season, 16.0));
        let (s, min) = h.for_site("a");
        assert_eq!((s, min), (&h.season, 18.0));

        let all = errors("[heating.sites.x]\nseason_start = \"10/20\"\ntimezone = \"Harbin\"\nmin_indoor_c = 40\nseason = 1\n");
        assert_has(
            &all,
            &[
                "heating.sites.x.season_start: `10/20` is not a month and day; valid: MM-DD",
                "heating.sites.x.timezone: `Harbin` is not an IANA time zone",
                "heating.sites.x.min_indoor_c: `40` is not an indoor minimum",
                "heating.sites.x.season: unknown key; valid keys here: season_start, season_end, timezone, min_indoor_c",
            ],
        );
    }
}
