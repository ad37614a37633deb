//! `report --publish`: the scorecard as `assessment` points (DESIGN §5), one per KPI, tags
//! site, period (its label) and kpi (its name), fields actual, target, score and weight,
//! stamped with the end of the period. A KPI without data has no `actual` and no `score`
//! field (line protocol has no null); `target` and `weight` are always there.

use super::period::Period;
use super::scorecard::Scorecard;
use crate::config::StoreSettings;
use crate::encode::line::{assessment_key, Field, FieldWriter};

/// The `assessment` lines of a scorecard (timestamps in ms).
pub fn assessment_lines(site: &str, period: &Period, card: &Scorecard) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = FieldWriter;
    for k in &card.kpis {
        let key = assessment_key(site, &period.label, &k.name);
        let fields = [
            ("actual", k.actual),
            ("target", Some(k.target)),
            ("score", k.score),
            ("weight", Some(k.weight)),
        ];
        w.line(
            &mut out,
            &key,
            fields
                .into_iter()
                .filter_map(|(n, v)| v.map(|v| (n, Field::F64(v)))),
            period.to_ms,
        );
    }
    out
}

/// Version of the summary messages' JSON (`schema` key of the kpi and assessment messages).
pub const SUMMARY_SCHEMA: u32 = 1;

/// The scorecard as the retained MQTT message of `mqtt.assessment_topic` (README "Fleet"):
/// `schema` (1), `site`, `period` (its label), `from_ts`/`to_ts` (the period, unix ms),
/// `ts` (when it was computed), `total`, `grade`, `partial` (the period had not ended) and
/// `kpis` (name, label, actual, target, weight, score — as `report --format json`).
pub fn assessment_json(
    site: &str,
    period: &Period,
    card: &Scorecard,
    now_ms: i64,
) -> serde_json::Value {
    serde_json::json!({
        "schema": SUMMARY_SCHEMA,
        "site": site,
        "period": period.label,
        "from_ts": period.from_ms,
        "to_ts": period.to_ms,
        "ts": now_ms,
        "total": card.total,
        "grade": card.grade,
        "partial": card.partial,
        "kpis": card.kpis,
    })
}

/// Writes the scorecard's `assessment` points to the store.
pub async fn publish(
    store: &StoreSettings,
    site: &str,
    period: &Period,
    card: &Scorecard,
) -> anyhow::Result<usize> {
    let lines = assessment_lines(site, period, card);
    crate::sink::store::write_lines(store, lines).await?;
    Ok(card.kpis.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::scorecard::KpiScore;
    use influxdb_line_protocol::{parse_lines, FieldValue};

    #[test]
    fn one_point_per_kpi_with_escaped_tags() {
        let period = Period {
            label: "2026-11-01/2026-11-15T12:00:00+08:00".into(),
            from_ms: 0,
            to_ms: 1_800_000_000_000,
        };
        let k = |name: &str, actual: Option<f64>, score: Option<f64>| KpiScore {
            name: name.into(),
            label: "完好率".into(),
            actual,
            target: 0.99,
            weight: 25.0,
            score,
        };
        let card = Scorecard {
            total: Some(100.0),
            grade: Some("优秀".into()),
            kpis: vec![
                k("fire_intactness", Some(1.0), Some(25.0)),
                k("heating_compliance", None, None),
            ],
            partial: false,
        };
        let bytes = assessment_lines("华府 east,1", &period, &card);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let lines: Vec<_> = parse_lines(&text).collect::<Result<_, _>>().unwrap();
        let l0 = &lines[0];
        assert_eq!(l0.series.measurement.as_str(), "assessment");
        let tags: Vec<(String, String)> = l0
            .series
            .tag_set
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            tags,
            [
                ("kpi".to_owned(), "fire_intactness".to_owned()),
                (
                    "period".to_owned(),
                    "2026-11-01/2026-11-15T12:00:00+08:00".to_owned()
                ),
                ("site".to_owned(), "华府 east,1".to_owned()),
            ]
        );
        let fields: Vec<(String, f64)> = l0
            .field_set
            .iter()
            .map(|(k, v)| match v {
                FieldValue::F64(x) => (k.to_string(), *x),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("actual".to_owned(), 1.0),
                ("target".to_owned(), 0.99),
                ("score".to_owned(), 25.0),
                ("weight".to_owned(), 25.0)
            ]
        );
        assert_eq!(l0.timestamp, Some(1_800_000_000_000));
        // No data: only target and weight.
        let names: Vec<String> = lines[1]
            .field_set
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(names, ["target", "weight"]);
    }
}
