//! The scorecard (考核评分, DESIGN §4): each KPI's actual value against its target, its score,
//! the total out of 100 and the grade.
//!
//! - A KPI's score is its full weight when actual ≥ target, else
//!   `weight − deduct_per_point × (percentage points short)`, floored at 0. Example: target
//!   99 %, actual 97.5 %, weight 25, 5 per point → 25 − 5 × 1.5 = 17.5.
//! - A KPI with no data (actual `None`: no device time to rate, no alarm that counts, a period
//!   outside the heating season) scores `None`, and its weight is left out of the total:
//!   `total = Σ scores × 100 / Σ weights of the KPIs with data`, so the total is still out of
//!   100 (three KPIs of weight 25 at 25, 20 and 15 → 60 × 100 / 75 = 80). With no KPI with
//!   data there is no total and no grade.
//! - The grade is the first band, from the top, whose `min` the total reaches.
//! - Intactness KPIs over several categories combine the categories' summed state times
//!   (Σ intact / Σ denominator), not an average of their rates; response KPIs over several
//!   classes combine their counts (Σ timely / Σ counted).

use serde::Serialize;

use crate::config::{Grade, KpiFigure, KpiSettings};
use crate::core::kpi::{OfflinePolicy, StateTime};
use crate::core::response::ResponseSummary;
use crate::core::response::Step;

use super::Figures;

/// One KPI's line of the scorecard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiScore {
    pub name: String,
    pub label: String,
    /// A fraction in [0, 1]; `None`: no data in the period.
    pub actual: Option<f64>,
    pub target: f64,
    pub weight: f64,
    /// `None` when `actual` is.
    pub score: Option<f64>,
}

/// The scorecard of one site over one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scorecard {
    /// Out of 100; `None` when no KPI has data.
    pub total: Option<f64>,
    pub grade: Option<String>,
    pub kpis: Vec<KpiScore>,
    /// The period has not ended: the figures stop at the time of the report.
    pub partial: bool,
}

/// Builds the scorecard from the figures (see the module docs).
pub fn scorecard(
    figures: &Figures,
    kpis: &[KpiSettings],
    grades: &[Grade],
    offline: OfflinePolicy,
) -> Scorecard {
    let kpis: Vec<KpiScore> = kpis
        .iter()
        .map(|k| {
            let actual = actual(figures, &k.figure, offline);
            KpiScore {
                name: k.name.clone(),
                label: k.label.clone(),
                actual,
                target: k.target,
                weight: k.weight,
                score: actual.map(|a| score(a, k)),
            }
        })
        .collect();
    let (sum, weights) = kpis
        .iter()
        .filter_map(|k| k.score.map(|s| (s, k.weight)))
        .fold((0.0, 0.0), |(s, w), (ks, kw)| (s + ks, w + kw));
    let total = (weights > 0.0).then(|| tidy(sum * 100.0 / weights));
    Scorecard {
        grade: total.and_then(|t| grade(t, grades)),
        total,
        kpis,
        partial: figures.partial,
    }
}

/// Full weight at or above target, else weight − deduct × points short, floored at 0.
pub fn score(actual: f64, k: &KpiSettings) -> f64 {
    if actual >= k.target {
        return k.weight;
    }
    // Rounded to 1e-9 points so that 1.0 − 0.98 is 2 points, not 2.0000000000000018.
    let short = tidy((k.target - actual) * 100.0);
    tidy((k.weight - k.deduct_per_point * short).max(0.0))
}

/// The first band (from the top) whose `min` the total reaches.
pub fn grade(total: f64, grades: &[Grade]) -> Option<String> {
    let mut sorted: Vec<&Grade> = grades.iter().collect();
    sorted.sort_by(|a, b| b.min.total_cmp(&a.min));
    sorted
        .into_iter()
        .find(|g| total >= g.min)
        .map(|g| g.name.clone())
}

fn tidy(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// The KPI's actual value from the figures.
fn actual(f: &Figures, figure: &KpiFigure, offline: OfflinePolicy) -> Option<f64> {
    match figure {
        KpiFigure::Intactness {
            building: Some(b), ..
        } => f.intactness_by_building.get(b)?.time.rate(offline),
        KpiFigure::Intactness { categories, .. } if categories.is_empty() => {
            f.intactness.time.rate(offline)
        }
        KpiFigure::Intactness { categories, .. } => {
            let mut t = StateTime::default();
            for c in categories {
                if let Some(i) = f.intactness_by_category.get(c) {
                    t.add(&i.time);
                }
            }
            t.rate(offline)
        }
        KpiFigure::Response {
            categories,
            severity,
            step,
        } => {
            let (overall, by_category, by_class) = match step {
                Step::Response => (&f.response, &f.response_by_category, &f.response_by_class),
                Step::Arrival => (
                    &f.arrival.overall,
                    &f.arrival.by_category,
                    &f.arrival.by_class,
                ),
                Step::Repair => (&f.repair.overall, &f.repair.by_category, &f.repair.by_class),
            };
            if categories.is_empty() && severity.is_none() {
                return overall.timely_rate;
            }
            let picked: Vec<&ResponseSummary> = match severity {
                None => categories
                    .iter()
                    .filter_map(|c| by_category.get(c))
                    .collect(),
                Some(sev) => by_class
                    .iter()
                    .filter(|((c, s), _)| {
                        s == sev && (categories.is_empty() || categories.contains(c))
                    })
                    .map(|(_, r)| r)
                    .collect(),
            };
            let (timely, count) = picked
                .iter()
                .fold((0u64, 0u64), |(t, n), r| (t + r.timely, n + r.count));
            (count > 0).then(|| timely as f64 / count as f64)
        }
        KpiFigure::Heating => f.heating.compliance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_grades, default_kpis};
    use crate::report::figures::{Heating, Intactness};

    fn kpi(target: f64, weight: f64, deduct: f64) -> KpiSettings {
        KpiSettings {
            name: "k".into(),
            label: "指标".into(),
            figure: KpiFigure::Heating,
            target,
            weight,
            deduct_per_point: deduct,
        }
    }

    #[test]
    fn deductions_and_floors() {
        let k = kpi(0.99, 25.0, 5.0);
        assert_eq!(score(0.995, &k), 25.0); // above target: full weight
        assert_eq!(score(0.99, &k), 25.0); // exactly on target
        assert_eq!(score(0.975, &k), 17.5); // 1.5 points short: 25 − 7.5
        assert_eq!(score(0.94, &k), 0.0); // 5 points short: 25 − 25
        assert_eq!(score(0.5, &k), 0.0); // 49 points short: floored at 0
        let k = kpi(1.0, 25.0, 5.0);
        assert_eq!(score(0.98, &k), 15.0); // 2 points short, no float noise
        assert_eq!(score(0.9999, &k), 24.95); // 0.01 points short
        let k = kpi(0.97, 40.0, 0.0);
        assert_eq!(score(0.1, &k), 40.0); // no deduction rule: always full weight
    }

    #[test]
    fn grades_at_the_band_edges() {
        let g = default_grades();
        assert_eq!(grade(100.0, &g).as_deref(), Some("优秀"));
        assert_eq!(grade(90.0, &g).as_deref(), Some("优秀"));
        assert_eq!(grade(89.999, &g).as_deref(), Some("良好"));
        assert_eq!(grade(80.0, &g).as_deref(), Some("良好"));
        assert_eq!(grade(79.99, &g).as_deref(), Some("合格"));
        assert_eq!(grade(60.0, &g).as_deref(), Some("合格"));
        assert_eq!(grade(59.99, &g).as_deref(), Some("不合格"));
        assert_eq!(grade(0.0, &g).as_deref(), Some("不合格"));
        // Bands given in any order.
        let mut rev = g.clone();
        rev.reverse();
        assert_eq!(grade(85.0, &rev).as_deref(), Some("良好"));
    }

    fn st(intact: i64, fault: i64, offline: i64, maintenance: i64) -> StateTime {
        StateTime {
            intact,
            fault,
            offline,
            maintenance,
            unmonitored: 0,
        }
    }

    fn intact(time: StateTime) -> Intactness {
        Intactness {
            rate: time.rate(OfflinePolicy::NotIntact),
            devices: 1,
            time,
        }
    }

    const H: i64 = 3_600_000;

    /// A month of figures: fire equipment all intact, electromechanical 98 %, response 97.5 %,
    /// repair 98 %, heating 96 %, no arrival figure.
    fn figures() -> Figures {
        let mut f = Figures {
            site: "huafu".into(),
            ..Default::default()
        };
        f.intactness_by_category
            .insert("fire_equipment".into(), intact(st(3 * 720 * H, 0, 0, 0)));
        // Elevators: 4 × 720 h, 72 h fault, 24 h maintenance → 2784 / 2856.
        f.intactness_by_category
            .insert("elevator".into(), intact(st(2784 * H, 72 * H, 0, 24 * H)));
        // Gates: 2 × 720 h, 1 h offline → 1439 / 1440.
        f.intactness_by_category
            .insert("access_gate".into(), intact(st(1439 * H, 0, H, 0)));
        f.response.count = 40;
        f.response.timely = 39;
        f.response.timely_rate = Some(39.0 / 40.0);
        f.repair.overall.count = 50;
        f.repair.overall.timely = 49;
        f.repair.overall.timely_rate = Some(49.0 / 50.0);
        f.heating = Heating {
            compliance: Some(0.96),
            coverage: Some(1.0),
            ..Default::default()
        };
        f
    }

    #[test]
    fn default_scorecard_with_combined_categories() {
        let f = figures();
        let s = scorecard(
            &f,
            &default_kpis(),
            &default_grades(),
            OfflinePolicy::NotIntact,
        );
        let by = |n: &str| s.kpis.iter().find(|k| k.name == n).unwrap().clone();
        assert_eq!(by("fire_intactness").actual, Some(1.0));
        assert_eq!(by("fire_intactness").score, Some(20.0));
        // Elevators and gates together (no heating_loop in the figures):
        // (2784 + 1439) / (2784 + 72 + 1439 + 1) = 4223 / 4296 = 0.983007…,
        // not the mean of 0.974790 and 0.999306 (0.987048).
        let em = by("electromechanical_intactness");
        assert_eq!(em.actual, Some(4223.0 / 4296.0));
        // 1.699 points short → 20 − 5 × 1.69925… = 11.5037…
        let expect = 20.0 - 5.0 * (1.0 - 4223.0 / 4296.0) * 100.0;
        assert!((em.score.unwrap() - expect).abs() < 1e-6, "{em:?}");
        // Response 97.5 %: 1.5 points short of 99 % → 12.5.
        assert_eq!(by("response_timeliness").score, Some(12.5));
        // Repair 98 %: 1 point short of 99 % → 15.
        assert_eq!(by("repair_timeliness").score, Some(15.0));
        // Heating 96 %: 1 point short of 97 % → 15.
        assert_eq!(by("heating_compliance").score, Some(15.0));
        // Arrival: reported with weight 0 (no figure here: no score).
        assert_eq!(by("arrival_timeliness").weight, 0.0);
        assert_eq!(by("arrival_timeliness").score, None);
        let total = 20.0 + expect + 12.5 + 15.0 + 15.0;
        assert!((s.total.unwrap() - total).abs() < 1e-6);
        // 20 + 11.5037 + 12.5 + 15 + 15 = 74.0037: 合格.
        assert_eq!(s.grade.as_deref(), Some("合格"));
        assert!(!s.partial);
    }

    #[test]
    fn offline_policy_changes_the_combined_rate() {
        let f = figures();
        let s = scorecard(
            &f,
            &default_kpis(),
            &default_grades(),
            OfflinePolicy::Excluded,
        );
        // The gates' offline hour leaves the denominator: 4223 / 4295.
        assert_eq!(s.kpis[1].actual, Some(4223.0 / 4295.0));
    }

    #[test]
    fn kpis_without_data_leave_their_weight_out() {
        let mut f = figures();
        // Outside the heating season: no heating figure.
        f.heating = Heating::default();
        let s = scorecard(
            &f,
            &default_kpis(),
            &default_grades(),
            OfflinePolicy::NotIntact,
        );
        assert_eq!(s.kpis[4].name, "heating_compliance");
        assert_eq!(s.kpis[4].actual, None);
        assert_eq!(s.kpis[4].score, None);
        // (20 + em + 12.5 + 15) × 100 / 80.
        let em = s.kpis[1].score.unwrap();
        let expect = (20.0 + em + 12.5 + 15.0) * 100.0 / 80.0;
        assert!((s.total.unwrap() - expect).abs() < 1e-6, "{s:?}");

        // Three KPIs of 20 at 20, 15 and 13 → 48 × 100 / 60 = 80: 良好, at the edge.
        let mut ks = default_kpis();
        ks.truncate(3);
        for k in &mut ks {
            k.figure = KpiFigure::Heating;
        }
        let mut f = Figures::default();
        f.heating.compliance = Some(0.99);
        ks[0].target = 0.99; // 20
        ks[1].target = 1.0; // 1 point short: 15
        ks[2].target = 1.0;
        ks[2].deduct_per_point = 7.0; // 1 point short: 13
        let mut all = ks.clone();
        all.push(KpiSettings {
            figure: KpiFigure::Intactness {
                categories: vec!["elevator".into()],
                building: None,
            },
            ..ks[0].clone()
        });
        let s = scorecard(&f, &all, &default_grades(), OfflinePolicy::NotIntact);
        assert_eq!(
            s.kpis.iter().map(|k| k.score).collect::<Vec<_>>(),
            [Some(20.0), Some(15.0), Some(13.0), None]
        );
        assert_eq!(s.total, Some(80.0));
        assert_eq!(s.grade.as_deref(), Some("良好"));

        // Nothing at all: no total, no grade.
        let s = scorecard(
            &Figures::default(),
            &default_kpis(),
            &default_grades(),
            OfflinePolicy::NotIntact,
        );
        assert_eq!((s.total, s.grade), (None, None));
        assert!(s
            .kpis
            .iter()
            .all(|k| k.actual.is_none() && k.score.is_none()));
    }

    #[test]
    fn building_and_response_class_kpis() {
        let mut f = Figures::default();
        f.intactness_by_building
            .insert("1号楼".into(), intact(st(9 * H, H, 0, 0)));
        let rs = |timely: u64, count: u64| ResponseSummary {
            timely,
            count,
            late: count - timely,
            timely_rate: Some(timely as f64 / count as f64),
            ..Default::default()
        };
        f.response_by_category.insert("elevator".into(), rs(9, 10));
        f.response_by_category
            .insert("fire_equipment".into(), rs(1, 2));
        f.response_by_class
            .insert(("elevator".into(), "critical".into()), rs(4, 5));
        f.response_by_class
            .insert(("elevator".into(), "minor".into()), rs(5, 5));
        f.response_by_class
            .insert(("fire_equipment".into(), "critical".into()), rs(1, 2));
        let k = |figure| KpiSettings {
            figure,
            ..kpi(0.5, 10.0, 1.0)
        };
        let cats = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ks = [
            k(KpiFigure::Intactness {
                categories: vec![],
                building: Some("1号楼".into()),
            }),
            k(KpiFigure::Response {
                categories: cats(&["elevator", "fire_equipment"]),
                severity: None,
                step: Step::Response,
            }),
            k(KpiFigure::Response {
                categories: vec![],
                severity: Some("critical".into()),
                step: Step::Response,
            }),
            k(KpiFigure::Response {
                categories: cats(&["elevator"]),
                severity: Some("minor".into()),
                step: Step::Response,
            }),
            k(KpiFigure::Response {
                categories: cats(&["access_gate"]),
                severity: None,
                step: Step::Response,
            }),
        ];
        let s = scorecard(&f, &ks, &default_grades(), OfflinePolicy::NotIntact);
        let a: Vec<Option<f64>> = s.kpis.iter().map(|k| k.actual).collect();
        // 9/10; (9 + 1)/(10 + 2); critical of all categories (4 + 1)/(5 + 2); 5/5; none.
        assert_eq!(
            a,
            [
                Some(0.9),
                Some(10.0 / 12.0),
                Some(5.0 / 7.0),
                Some(1.0),
                None
            ]
        );
    }
}
