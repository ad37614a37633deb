//! Simulated signal values: how each signal of a simulated device moves over time. A device's
//! values are a small, seeded random process advanced by `step(dt)` — no clock is read, so the
//! same seed and the same steps give the same values, in tests and in a demo alike.
//!
//! Motions are chosen per (category, signal), after what the real plant does: a heating loop's
//! supply temperature wanders slowly around its setpoint (55 °C) and follows it when the
//! setpoint is written, the return runs about 15 °C below the supply, loop pressure stays in
//! 0.35–0.45 MPa and flow in 20–40 m³/h; a fire main holds 0.6–0.7 MPa with the pump on auto and
//! mains power; rooms sit at 19–23 °C. Everything else holds its value (states, fault codes,
//! setpoints) until it is written or forced by a fault. The wandering signals are
//! Ornstein–Uhlenbeck processes (a random walk pulled back to its mean), sampled exactly for any
//! step length, so a 500 ms tick and a 10 s step have the same statistics.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{SignalType, Value};

/// How one signal moves.
#[derive(Debug, Clone, PartialEq)]
enum Motion {
    /// Stays where it is until written (setpoints, states, fault codes).
    Hold,
    /// Wanders around `mean` with stationary standard deviation `sd`, pulled back with time
    /// constant `tau` seconds, clamped to `lo..=hi`.
    Wander {
        mean: f64,
        sd: f64,
        tau: f64,
        lo: f64,
        hi: f64,
    },
    /// Like `Wander`, around another signal's value plus `offset` (around `fallback` when the
    /// device does not have that signal).
    Follow {
        target: Option<usize>,
        offset: f64,
        fallback: f64,
        sd: f64,
        tau: f64,
        lo: f64,
        hi: f64,
    },
    /// Falls by `per_hour` each hour, down to `lo` (a battery).
    Drain { per_hour: f64, lo: f64 },
    /// Counts up by random arrivals, `per_hour` on average (gate passages).
    Count { per_hour: f64 },
    /// Moves to a random floor of `1..=top`, `per_hour` times an hour on average.
    Floors { top: i64, per_hour: f64 },
}

/// The motion of a (category, signal), before the `Follow` targets are resolved.
fn motion_of(category: &str, signal: &str) -> (Motion, Option<&'static str>) {
    let wander = |mean, sd, tau, lo, hi| Motion::Wander {
        mean,
        sd,
        tau,
        lo,
        hi,
    };
    let follow = |offset, fallback, sd, tau| Motion::Follow {
        target: None,
        offset,
        fallback,
        sd,
        tau,
        lo: 0.0,
        hi: 99.0,
    };
    match (category, signal) {
        ("heating_loop", "supply_temp_c") => {
            (follow(0.0, 55.0, 0.8, 300.0), Some("supply_setpoint_c"))
        }
        ("heating_loop", "return_temp_c") => {
            (follow(-15.0, 40.0, 1.0, 600.0), Some("supply_temp_c"))
        }
        ("heating_loop", "pressure_mpa") => (wander(0.40, 0.02, 120.0, 0.35, 0.45), None),
        ("heating_loop", "flow_m3h") => (wander(30.0, 4.0, 300.0, 20.0, 40.0), None),
        ("fire_equipment", "pressure_mpa") => (wander(0.65, 0.02, 300.0, 0.60, 0.70), None),
        ("indoor_sensor", "indoor_temp_c") => (wander(21.0, 1.0, 1800.0, 19.0, 23.0), None),
        ("indoor_sensor", "humidity_pct") => (wander(45.0, 5.0, 1800.0, 30.0, 70.0), None),
        ("indoor_sensor", "battery_pct") => (
            Motion::Drain {
                per_hour: 0.01,
                lo: 0.0,
            },
            None,
        ),
        ("access_gate", "passages") => (Motion::Count { per_hour: 120.0 }, None),
        ("elevator", "floor") => (
            Motion::Floors {
                top: 18,
                per_hour: 60.0,
            },
            None,
        ),
        _ => (Motion::Hold, None),
    }
}

/// Boolean signals that start `true` (everything else starts `false`: alarms, faults).
const STARTS_TRUE: &[(&str, &str)] = &[
    ("heating_loop", "pump_running"),
    ("fire_equipment", "pump_auto"),
];

/// Setpoints and other held numbers that do not start at 0.
const STARTS_AT: &[(&str, &str, f64)] = &[("heating_loop", "supply_setpoint_c", 55.0)];

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    ty: SignalType,
    motion: Motion,
    value: Value,
    /// Set by a `value` fault: what the device reports instead of `value`.
    forced: Option<Value>,
}

/// The simulated values of one device's signals.
#[derive(Debug, Clone)]
pub struct DeviceValues {
    slots: Vec<Slot>,
    rng: StdRng,
}

impl DeviceValues {
    /// Values for `signals` of a device of `category`. Each device draws from its own random
    /// stream, seeded from `seed` and its id, so adding a device changes no other device's values.
    pub fn new(
        category: &str,
        signals: &[(String, SignalType)],
        seed: u64,
        device_id: &str,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(device_id.as_bytes()));
        let mut slots: Vec<Slot> = Vec::with_capacity(signals.len());
        let mut targets: Vec<Option<&'static str>> = Vec::with_capacity(signals.len());
        for (name, ty) in signals {
            let numeric = matches!(ty, SignalType::Float | SignalType::Int);
            let (motion, target) = if numeric {
                motion_of(category, name)
            } else {
                (Motion::Hold, None)
            };
            let value = initial(category, name, ty, &motion, &mut rng);
            slots.push(Slot {
                name: name.clone(),
                ty: ty.clone(),
                motion,
                value,
                forced: None,
            });
            targets.push(target);
        }
        for (i, target) in targets.iter().enumerate() {
            let idx = target.and_then(|t| slots.iter().position(|s| s.name == t));
            if let Motion::Follow { target, .. } = &mut slots[i].motion {
                *target = idx.filter(|&t| t != i);
            }
        }
        // Followers start near their target (in signal order; a chain settles in a few passes).
        for _ in 0..slots.len() {
            for i in 0..slots.len() {
                if let Motion::Follow {
                    target,
                    offset,
                    fallback,
                    sd,
                    lo,
                    hi,
                    ..
                } = slots[i].motion
                {
                    let base = target.map_or(fallback, |t| number(&slots[t].value));
                    let x = (base + offset + sd * 0.25 * normal(&mut rng)).clamp(lo, hi);
                    slots[i].value = typed(x, &slots[i].ty);
                }
            }
        }
        DeviceValues { slots, rng }
    }

    /// Advances every signal by `dt` of simulated time.
    pub fn step(&mut self, dt: Duration) {
        let dt = dt.as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        for i in 0..self.slots.len() {
            let x = number(&self.slots[i].value);
            let next = match self.slots[i].motion {
                Motion::Hold => continue,
                Motion::Wander {
                    mean,
                    sd,
                    tau,
                    lo,
                    hi,
                } => ou(x, mean, sd, tau, dt, &mut self.rng).clamp(lo, hi),
                Motion::Follow {
                    target,
                    offset,
                    fallback,
                    sd,
                    tau,
                    lo,
                    hi,
                } => {
                    let base = target.map_or(fallback, |t| number(self.effective(t)));
                    ou(x, base + offset, sd, tau, dt, &mut self.rng).clamp(lo, hi)
                }
                Motion::Drain { per_hour, lo } => (x - per_hour * dt / 3600.0).max(lo),
                Motion::Count { per_hour } => x + poisson(per_hour * dt / 3600.0, &mut self.rng),
                Motion::Floors { top, per_hour } => {
                    let p = (per_hour * dt / 3600.0).min(1.0);
                    if self.rng.random_bool(p) {
                        self.rng.random_range(1..=top) as f64
                    } else {
                        x
                    }
                }
            };
            if next.is_finite() {
                self.slots[i].value = typed(next, &self.slots[i].ty);
            }
        }
    }

    /// The index of a signal.
    pub fn index(&self, signal: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == signal)
    }

    /// The signals, in order.
    pub fn signals(&self) -> impl Iterator<Item = (&str, &SignalType)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.ty))
    }

    /// What the device reports for signal `idx`: the forced value while a `value` fault holds,
    /// else the simulated one.
    pub fn effective(&self, idx: usize) -> &Value {
        let s = &self.slots[idx];
        s.forced.as_ref().unwrap_or(&s.value)
    }

    /// The value of a signal by name (see `effective`).
    pub fn get(&self, signal: &str) -> Option<&Value> {
        self.index(signal).map(|i| self.effective(i))
    }

    /// Sets signal `idx` (already of its type, see `coerce`); moving signals move on from it.
    pub fn set(&mut self, idx: usize, v: Value) {
        self.slots[idx].value = v;
    }

    /// Forces signal `idx` to `v` (a `value` fault), or releases it with `None`.
    pub fn force(&mut self, idx: usize, v: Option<Value>) {
        self.slots[idx].forced = v;
    }

    /// The name of signal `idx`.
    pub fn signal_name(&self, idx: usize) -> &str {
        &self.slots[idx].name
    }

    /// The type of signal `idx`.
    pub fn signal_type(&self, idx: usize) -> &SignalType {
        &self.slots[idx].ty
    }
}

/// `v` as a value of type `ty`, accepting the lenient forms the gateway accepts from devices
/// (an integer for a float, `3.0` for an int, 0/1 for a bool); `None` if it is not one.
pub fn coerce(v: &Value, ty: &SignalType) -> Option<Value> {
    match (ty, v) {
        (SignalType::Float, Value::Float(f)) if f.is_finite() => Some(Value::Float(*f)),
        (SignalType::Float, Value::Int(i)) => Some(Value::Float(*i as f64)),
        (SignalType::Int, Value::Int(i)) => Some(Value::Int(*i)),
        (SignalType::Int, Value::Float(f)) if f.is_finite() && f.fract() == 0.0 => {
            Some(Value::Int(*f as i64))
        }
        (SignalType::Bool, Value::Bool(b)) => Some(Value::Bool(*b)),
        (SignalType::Bool, Value::Int(i @ (0 | 1))) => Some(Value::Bool(*i == 1)),
        (SignalType::Enum(values), Value::Str(s)) if values.contains(s) => {
            Some(Value::Str(s.clone()))
        }
        (SignalType::String, Value::Str(s)) => Some(Value::Str(s.clone())),
        _ => None,
    }
}

fn initial(
    category: &str,
    signal: &str,
    ty: &SignalType,
    motion: &Motion,
    rng: &mut StdRng,
) -> Value {
    let x = match *motion {
        Motion::Wander {
            mean, sd, lo, hi, ..
        } => (mean + sd * normal(rng)).clamp(lo, hi),
        Motion::Follow { fallback, .. } => fallback,
        Motion::Drain { .. } => rng.random_range(80.0..100.0),
        Motion::Count { .. } => f64::from(rng.random_range(0..5000_u32)),
        Motion::Floors { top, .. } => rng.random_range(1..=top) as f64,
        Motion::Hold => match ty {
            SignalType::Bool => {
                return Value::Bool(STARTS_TRUE.contains(&(category, signal)));
            }
            SignalType::Enum(values) => {
                return Value::Str(values.first().cloned().unwrap_or_default())
            }
            SignalType::String => return Value::Str(String::new()),
            SignalType::Float | SignalType::Int => STARTS_AT
                .iter()
                .find(|(c, s, _)| *c == category && *s == signal)
                .map_or(0.0, |(_, _, x)| *x),
        },
    };
    typed(x, ty)
}

/// A numeric value as f64 (0 for anything else; numeric motions only run on numeric signals).
fn number(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(_) => 0.0,
    }
}

fn typed(x: f64, ty: &SignalType) -> Value {
    match ty {
        SignalType::Int => Value::Int(x.round() as i64),
        _ => Value::Float(x),
    }
}

/// One exact step of an Ornstein–Uhlenbeck process: mean `mean`, stationary sd `sd`, time
/// constant `tau` s, step `dt` s.
fn ou(x: f64, mean: f64, sd: f64, tau: f64, dt: f64, rng: &mut StdRng) -> f64 {
    let a = (-dt / tau).exp();
    mean + (x - mean) * a + sd * (1.0 - a * a).sqrt() * normal(rng)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson draw with mean `lambda` (Knuth; the rates here are small).
fn poisson(lambda: f64, rng: &mut StdRng) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0);
    }
    let limit = (-lambda).exp();
    let mut k = 0.0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1.0;
        p *= rng.random::<f64>();
    }
    k
}

/// FNV-1a: a stable hash of the device id for its random stream (std's hasher is not stable
/// across releases, and the same seed must give the same values everywhere).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heating() -> Vec<(String, SignalType)> {
        [
            ("supply_temp_c", SignalType::Float),
            ("return_temp_c", SignalType::Float),
            ("pressure_mpa", SignalType::Float),
            ("flow_m3h", SignalType::Float),
            ("pump_running", SignalType::Bool),
            ("fault_code", SignalType::Int),
            ("supply_setpoint_c", SignalType::Float),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t))
        .collect()
    }

    fn f(v: Option<&Value>) -> f64 {
        match v {
            Some(Value::Float(x)) => *x,
            other => panic!("not a float: {other:?}"),
        }
    }

    #[test]
    fn heating_loop_moves_within_its_ranges_for_a_day() {
        let mut d = DeviceValues::new("heating_loop", &heating(), 7, "HX-1");
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for _ in 0..(24 * 3600 * 2) {
            d.step(Duration::from_millis(500));
            let supply = f(d.get("supply_temp_c"));
            let ret = f(d.get("return_temp_c"));
            lo = lo.min(supply);
            hi = hi.max(supply);
            assert!((50.0..60.0).contains(&supply), "supply {supply}");
            assert!(
                (supply - ret - 15.0).abs() < 6.0,
                "supply {supply} return {ret}"
            );
            assert!((0.35..=0.45).contains(&f(d.get("pressure_mpa"))));
            assert!((20.0..=40.0).contains(&f(d.get("flow_m3h"))));
        }
        assert!(hi - lo > 1.0, "supply does not move: {lo}..{hi}");
        assert_eq!(d.get("pump_running"), Some(&Value::Bool(true)));
        assert_eq!(d.get("fault_code"), Some(&Value::Int(0)));
        assert_eq!(d.get("supply_setpoint_c"), Some(&Value::Float(55.0)));
    }

    #[test]
    fn supply_follows_a_new_setpoint() {
        let mut d = DeviceValues::new("heating_loop", &heating(), 7, "HX-1");
        let sp = d.index("supply_setpoint_c").unwrap();
        d.set(sp, Value::Float(45.0));
        for _ in 0..120 {
            d.step(Duration::from_secs(30)); // an hour
        }
        let supply = f(d.get("supply_temp_c"));
        assert!((supply - 45.0).abs() < 4.0, "supply {supply}");
    }

    #[test]
    fn same_seed_same_values_and_devices_are_independent() {
        let run = |seed, id: &str| {
            let mut d = DeviceValues::new("heating_loop", &heating(), seed, id);
            (0..100)
                .map(|_| {
                    d.step(Duration::from_millis(500));
                    f(d.get("supply_temp_c"))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1, "HX-1"), run(1, "HX-1"));
        assert_ne!(run(1, "HX-1"), run(2, "HX-1"));
        assert_ne!(run(1, "HX-1"), run(1, "HX-2"));
    }

    #[test]
    fn forced_values_win_until_released() {
        let mut d = DeviceValues::new("heating_loop", &heating(), 1, "HX-1");
        let i = d.index("supply_temp_c").unwrap();
        d.force(i, Some(Value::Float(20.0)));
        d.step(Duration::from_secs(1));
        assert_eq!(d.effective(i), &Value::Float(20.0));
        d.force(i, None);
        assert!(f(Some(d.effective(i))) > 45.0);
    }

    #[test]
    fn other_categories_start_sensibly() {
        let fire = [
            ("fire_alarm", SignalType::Bool),
            ("fault_count", SignalType::Int),
            ("pump_auto", SignalType::Bool),
            ("pressure_mpa", SignalType::Float),
            (
                "power",
                SignalType::Enum(vec!["main".into(), "backup".into()]),
            ),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t))
        .collect::<Vec<_>>();
        let mut d = DeviceValues::new("fire_equipment", &fire, 3, "FP-1");
        for _ in 0..1000 {
            d.step(Duration::from_secs(1));
            assert!((0.6..=0.7).contains(&f(d.get("pressure_mpa"))));
        }
        assert_eq!(d.get("fire_alarm"), Some(&Value::Bool(false)));
        assert_eq!(d.get("pump_auto"), Some(&Value::Bool(true)));
        assert_eq!(d.get("power"), Some(&Value::Str("main".into())));
        assert_eq!(d.get("fault_count"), Some(&Value::Int(0)));

        let room = [("indoor_temp_c", SignalType::Float)].map(|(n, t)| (n.to_owned(), t));
        let mut r = DeviceValues::new("indoor_sensor", &room, 3, "T-1");
        for _ in 0..10_000 {
            r.step(Duration::from_secs(10));
            assert!((19.0..=23.0).contains(&f(r.get("indoor_temp_c"))));
        }
    }

    #[test]
    fn coercion_follows_the_gateways_leniency() {
        assert_eq!(
            coerce(&Value::Int(3), &SignalType::Float),
            Some(Value::Float(3.0))
        );
        assert_eq!(
            coerce(&Value::Float(3.0), &SignalType::Int),
            Some(Value::Int(3))
        );
        assert_eq!(coerce(&Value::Float(3.5), &SignalType::Int), None);
        assert_eq!(
            coerce(&Value::Int(1), &SignalType::Bool),
            Some(Value::Bool(true))
        );
        assert_eq!(coerce(&Value::Int(2), &SignalType::Bool), None);
        let e = SignalType::Enum(vec!["main".into(), "backup".into()]);
        assert_eq!(coerce(&Value::Str("x".into()), &e), None);
        assert_eq!(coerce(&Value::Float(f64::NAN), &SignalType::Float), None);
    }
}
