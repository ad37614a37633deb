//! The store schema (DESIGN §5) as data: `estate-gateway schema` prints it, and dashboard tests
//! check every panel query against it, so a schema change cannot silently break a panel.

use crate::stats::Stats;

/// One measurement of the store schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub name: &'static str,
    pub tags: Vec<&'static str>,
    pub fields: Vec<String>,
    pub when: &'static str,
    /// Whether this version of the gateway writes it yet.
    pub written: bool,
}

/// Every measurement. `telemetry` fields are the signals of the category profiles (plus
/// `online` from status messages); see `configs/profiles/`.
pub fn measurements() -> Vec<Measurement> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    // The store sink writes exactly this list, so the schema cannot drift from it.
    let gateway_fields: Vec<String> = Stats::default()
        .gateway_fields(0, None)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    vec![
        Measurement {
            name: "telemetry",
            tags: vec!["site", "building", "category", "device"],
            fields: s(&["<one per signal of the category profile>", "online"]),
            when: "every reading",
            written: true,
        },
        Measurement {
            name: "device_state",
            tags: vec!["site", "building", "category", "device"],
            fields: s(&["state", "intact", "reason"]),
            when: "on every transition",
            written: true,
        },
        Measurement {
            name: "alarm",
            tags: vec![
                "site", "building", "category", "device", "rule", "severity", "event",
            ],
            fields: s(&[
                "id",
                "message",
                "by",
                "response_s",
                "arrival_s",
                "restore_s",
            ]),
            when: "on every lifecycle event",
            written: true,
        },
        Measurement {
            name: "intactness",
            tags: vec!["site", "scope", "scope_id"],
            fields: s(&["instant", "rate_day", "rate_month", "intact", "total"]),
            when: "every assessment.kpi_interval (default 60 s); scope site/category/building",
            written: true,
        },
        Measurement {
            name: "response",
            tags: vec!["site", "category", "severity", "step"],
            fields: s(&["timely_rate", "p50_s", "p90_s", "max_s", "count"]),
            when: "every assessment.kpi_interval; month to date; step = response (acknowledged, 响应及时率) | arrival (on site, 到场及时率) | repair (cleared, 修复及时率)",
            written: true,
        },
        Measurement {
            name: "heating",
            tags: vec!["site", "building"],
            fields: s(&["compliance", "coverage", "min_indoor_c", "avg_indoor_c"]),
            when: "every assessment.kpi_interval in the heating season; month to date",
            written: true,
        },
        Measurement {
            name: "assessment",
            tags: vec!["site", "period", "kpi"],
            fields: s(&["actual", "target", "score", "weight"]),
            when: "when a month closes, and on report --publish (one point per KPI, stamped with the period's end)",
            written: true,
        },
        Measurement {
            name: "gateway_probe",
            tags: vec!["site", "host"],
            fields: s(&["ok"]),
            when: "once per `estate-gateway doctor` run: the store check's test point",
            written: true,
        },
        Measurement {
            name: "gateway",
            tags: vec!["site", "host"],
            fields: gateway_fields,
            when: "every gateway.stats_interval (default 10 s)",
            written: true,
        },
    ]
}

/// The schema as a plain-text table.
pub fn render_table() -> String {
    let mut out = String::new();
    for m in measurements() {
        out.push_str(&format!(
            "{}{}\n  tags:   {}\n  fields: {}\n  when:   {}\n\n",
            m.name,
            if m.written {
                ""
            } else {
                "  (defined; not written by this version)"
            },
            m.tags.join(", "),
            m.fields.join(", "),
            m.when
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_measurement_is_listed_once() {
        let names: Vec<&str> = measurements().iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "telemetry",
                "device_state",
                "alarm",
                "intactness",
                "response",
                "heating",
                "assessment",
                "gateway_probe",
                "gateway"
            ]
        );
        let response = measurements()
            .into_iter()
            .find(|m| m.name == "response")
            .unwrap();
        assert_eq!(response.tags, ["site", "category", "severity", "step"]);
        assert!(
            response.when.contains("step = response"),
            "{}",
            response.when
        );
        let gw = measurements().pop().unwrap();
        for f in [
            "rejected_invalid_json",
            "modbus_polls",
            "modbus_poll_failures",
            "modbus_timeouts",
            "modbus_reconnects",
            "modbus_writes",
            "modbus_exception_illegal_data_address",
            "modbus_exception_server_device_busy",
            "modbus_exception_other",
            "poll_latency_ms",
        ] {
            assert!(gw.fields.contains(&f.to_owned()), "{f}");
        }
        let mut unique = gw.fields.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), gw.fields.len());
    }
}
