//! Generated scenarios of facts (DESIGN §4 "Event time"): devices of all five categories
//! with gaps longer and shorter than their heartbeat, fault phases that outlast their rules'
//! delays or not, `offline` statuses, acknowledgments and on-site reports before and after
//! clearing, and planned windows. Seeded: the same seed, the same facts. Used by the
//! determinism tests (replayed in order, interleaved, in real time, across restarts, and
//! through a live gateway with a real broker) and by the replay benchmark.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value as Json};

use super::{AlarmRef, Fact};

/// What a scenario contains besides readings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Start of the period (unix ms); readings begin within one interval of it.
    pub start_ms: i64,
    /// Operators' acknowledgments and on-site reports (by device and rule).
    pub commands: bool,
    /// Planned maintenance windows entered during the period.
    pub windows: bool,
}

/// A scenario: per device, its facts in `ts` order, and the end of the period.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub per_device: Vec<Vec<Fact>>,
    pub end_ms: i64,
}

impl Scenario {
    /// Every fact in `ts` order (ties in device order).
    pub fn in_order(&self) -> Vec<Fact> {
        let mut all: Vec<Fact> = self.per_device.iter().flatten().cloned().collect();
        all.sort_by_key(Fact::ts);
        all
    }
}

/// The site of the generated devices.
pub const SITE: &str = "jinxiu";

/// The generated estate: (id, category).
pub const DEVICES: &[(&str, &str)] = &[
    ("EL-1", "elevator"),
    ("EL-2", "elevator"),
    ("GA-1", "access_gate"),
    ("HX-1", "heating_loop"),
    ("TS-1", "indoor_sensor"),
    ("TS-2", "indoor_sensor"),
    ("FP-1", "fire_equipment"),
];

/// `[[devices]]` blocks for `DEVICES` (buildings 1号楼 and 2号楼).
pub fn devices_toml() -> String {
    let mut toml = String::new();
    for (id, cat) in DEVICES {
        toml += &format!(
            "[[devices]]\nid = \"{id}\"\nname = \"{id}\"\nbuilding = \"{}号楼\"\ncategory = \"{cat}\"\n\n",
            if id.ends_with('1') { 1 } else { 2 }
        );
    }
    toml
}

/// A healthy reading of a category, or one with a fault of kind `k` (0 = healthy).
pub fn values(cat: &str, k: u32, rng: &mut StdRng) -> Map<String, Json> {
    let v = match (cat, k) {
        ("elevator", 0) => {
            json!({"mode": "normal", "fault_code": 0, "entrapment": false, "floor": rng.random_range(1..20)})
        }
        ("elevator", 1) => json!({"mode": "normal", "fault_code": 0, "entrapment": true}),
        ("elevator", 2) => json!({"mode": "normal", "fault_code": 17, "entrapment": false}),
        ("elevator", _) => json!({"mode": "inspection", "fault_code": 0, "entrapment": false}),
        ("access_gate", 0) => json!({"door": "closed", "fault_code": 0}),
        ("access_gate", 1) => json!({"door": "open", "fault_code": 0}),
        ("access_gate", 2) => json!({"door": "forced", "fault_code": 0}),
        ("access_gate", _) => json!({"door": "closed", "fault_code": 3}),
        ("heating_loop", 0) => {
            json!({"supply_temp_c": 55.0 + rng.random_range(0.0..5.0), "return_temp_c": 40.0, "pressure_mpa": 0.5, "pump_running": true, "fault_code": 0})
        }
        ("heating_loop", 1) => {
            json!({"supply_temp_c": 35.0, "return_temp_c": 30.0, "pressure_mpa": 0.5, "pump_running": true, "fault_code": 0})
        }
        ("heating_loop", 2) => {
            json!({"supply_temp_c": 50.0, "return_temp_c": 40.0, "pressure_mpa": 0.5, "pump_running": false, "fault_code": 0})
        }
        ("heating_loop", _) => {
            json!({"supply_temp_c": 50.0, "return_temp_c": 40.0, "pressure_mpa": 0.05, "pump_running": true, "fault_code": 0})
        }
        ("indoor_sensor", 0) => json!({"indoor_temp_c": 19.0 + rng.random_range(0.0..3.0)}),
        ("indoor_sensor", _) => json!({"indoor_temp_c": 16.5}),
        ("fire_equipment", 0) => {
            json!({"fire_alarm": false, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.4, "power": "main"})
        }
        ("fire_equipment", 1) => {
            json!({"fire_alarm": true, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.4, "power": "main"})
        }
        ("fire_equipment", 2) => {
            json!({"fire_alarm": false, "fault_count": 2, "pump_auto": false, "pressure_mpa": 0.4, "power": "main"})
        }
        (_, _) => {
            json!({"fire_alarm": false, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.1, "power": "backup"})
        }
    };
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

fn rules(cat: &str) -> &'static [&'static str] {
    match cat {
        "elevator" => &["entrapment", "fault", "offline"],
        "access_gate" => &["door_forced", "held_open", "fault", "offline"],
        "heating_loop" => &["low_supply_temp", "pump_stopped", "pressure_low", "offline"],
        "indoor_sensor" => &["low_indoor_temp", "offline"],
        _ => &[
            "fire_alarm",
            "fault",
            "pump_manual",
            "pressure_low",
            "offline",
        ],
    }
}

/// The scenario of `seed`: a period of 20 to 90 minutes from `opts.start_ms`.
pub fn generate(seed: u64, opts: &Options) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let span: i64 = rng.random_range(20..90) * 60_000;
    let end = opts.start_ms + span;
    let mut all = Vec::new();
    for (id, cat) in DEVICES {
        let mut facts = Vec::new();
        let interval: i64 = match *cat {
            "elevator" | "access_gate" => 10_000,
            "fire_equipment" => 30_000,
            _ => 60_000,
        };
        let mut t = opts.start_ms + rng.random_range(0..interval);
        let mut fault = 0u32;
        let mut fault_until = 0i64;
        while t < end {
            if t >= fault_until {
                fault = 0;
                if rng.random_bool(0.08) {
                    fault = rng.random_range(1..4);
                    fault_until = t + rng.random_range(5_000..900_000);
                    // Someone reacts (maybe after the fault cleared, maybe never).
                    if opts.commands && rng.random_bool(0.7) {
                        let r = rules(cat);
                        let rule = r[rng.random_range(0..r.len())];
                        let at = t + rng.random_range(1_000..1_200_000);
                        let a = AlarmRef {
                            id: None,
                            site: Some(SITE.into()),
                            device: Some(id.to_string()),
                            rule: Some(rule.into()),
                            raised: None,
                            by: "值班员".into(),
                            ts: at,
                        };
                        if at < end {
                            if rng.random_bool(0.3) {
                                facts.push(Fact::OnSite(a));
                            } else {
                                facts.push(Fact::Ack(a));
                            }
                        }
                    }
                }
            }
            if opts.windows && rng.random_bool(0.01) {
                // A planned window entered now, starting later.
                let start = t + rng.random_range(0..600_000);
                facts.push(Fact::Maintenance {
                    site: SITE.into(),
                    device: id.to_string(),
                    start,
                    end: start + rng.random_range(60_000..1_800_000),
                    reason: "年检".into(),
                    by: "张工".into(),
                    ts: t,
                });
            }
            if rng.random_bool(0.01) {
                facts.push(Fact::Status {
                    site: SITE.into(),
                    device: id.to_string(),
                    ts: t,
                    status: "offline".into(),
                });
            } else {
                facts.push(Fact::Reading {
                    site: SITE.into(),
                    device: id.to_string(),
                    ts: t,
                    values: values(cat, fault, &mut rng),
                });
            }
            // Mostly regular; sometimes a gap shorter or longer than the heartbeat (3 ×).
            t += if rng.random_bool(0.05) {
                interval * rng.random_range(2..12) + rng.random_range(0..interval)
            } else {
                interval + rng.random_range(-500..500)
            };
        }
        facts.sort_by_key(Fact::ts);
        all.push(facts);
    }
    Scenario {
        per_device: all,
        end_ms: end,
    }
}
