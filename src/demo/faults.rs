//! The demo's fault schedule: which fault happens to which device, when and for how long —
//! a pure, seeded sequence (the same seed, devices and speed give the same schedule), so a
//! demo can be replayed and the schedule tested without sleeping.
//!
//! Times are simulated time since the demo started. The *gaps* between faults are drawn in
//! real seconds (8–25 s, the first after 5–12 s) and multiplied by the speed, so a viewer
//! sees a new fault every half minute or so at any `--speed`; at `--speed 4320` (a month in ten
//! minutes) that is one fault every 10–30 simulated hours, a plausible rate for an estate.
//! *Durations* are simulated time (an entrapment is freed after minutes, a heating loop is
//! repaired after a quarter of an hour), with a floor of a few real seconds so that every
//! fault is seen by at least one poll or publish however fast the clock runs.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// An elevator (MQTT) traps passengers (困人): critical, until freed.
    Entrapment { device: String },
    /// A fire pump panel (Modbus) reports `faults` faults.
    FirePanel { device: String, faults: i64 },
    /// A heating loop (Modbus) loses supply temperature: its pump stops and the supply falls
    /// towards the return; the rooms of `building` cool until it is repaired.
    HeatingLoss { device: String, building: String },
    /// A gate or elevator (MQTT) reports a fault code.
    FaultCode { device: String, code: i64 },
    /// A gate's door (MQTT) stands open (held open after 120 s).
    DoorHeldOpen { device: String },
}

impl FaultKind {
    /// The device the fault is on.
    pub fn device(&self) -> &str {
        match self {
            FaultKind::Entrapment { device }
            | FaultKind::FirePanel { device, .. }
            | FaultKind::HeatingLoss { device, .. }
            | FaultKind::FaultCode { device, .. }
            | FaultKind::DoorHeldOpen { device } => device,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Entrapment { .. } => write!(f, "elevator entrapment (困人)"),
            FaultKind::FirePanel { faults, .. } => {
                write!(f, "fire panel reports {faults} fault(s)")
            }
            FaultKind::HeatingLoss { building, .. } => write!(
                f,
                "heating loop loses supply temperature ({building} cools down)"
            ),
            FaultKind::FaultCode { code, .. } => write!(f, "fault code {code}"),
            FaultKind::DoorHeldOpen { .. } => write!(f, "door held open"),
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    /// Simulated time since the start at which it begins.
    pub at: Duration,
    /// How long it lasts (simulated).
    pub duration: Duration,
    pub kind: FaultKind,
}

/// The devices faults can happen to, by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// MQTT elevators.
    pub elevators: Vec<String>,
    /// MQTT access gates.
    pub gates: Vec<String>,
    /// Modbus fire pump panels (with a `fault_count` register).
    pub fire_panels: Vec<String>,
    /// Modbus heating loops and the building each heats.
    pub loops: Vec<(String, String)>,
}

/// Real seconds before the first fault.
const FIRST: (f64, f64) = (5.0, 12.0);
/// Real seconds between the starts of two faults.
const GAP: (f64, f64) = (8.0, 25.0);
/// A fault lasts at least this many real seconds (so a poll sees it at any speed).
const MIN_REAL_S: f64 = 4.0;

/// The schedule: an endless iterator of faults in order of `at`. A device never has two
/// faults at once (a busy device is skipped; when every device of the drawn scenario is busy,
/// another scenario is tried, and only when all are busy is that start skipped).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    rng: StdRng,
    targets: Targets,
    speed: f64,
    next_at: f64,
    /// The headline scenarios not yet shown, in a seeded order; they come first.
    headline: Vec<u8>,
    /// Simulated seconds until which a device is busy.
    busy: HashMap<String, f64>,
}

impl FaultPlan {
    pub fn new(seed: u64, targets: Targets, speed: f64) -> FaultPlan {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6465_6d6f_6661_756c);
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        // The entrapment first (an alarm within seconds), then the fire panel and the heating
        // loop in a seeded order.
        let mut headline = vec![0u8, 1, 2];
        if rng.random_bool(0.5) {
            headline.swap(1, 2);
        }
        headline.reverse();
        let next_at = rng.random_range(FIRST.0..FIRST.1) * speed;
        FaultPlan {
            rng,
            targets,
            speed,
            next_at,
            headline,
            busy: HashMap::new(),
        }
    }

    /// A fault of scenario `which` at `at` (simulated seconds), if a device for it is free.
    fn make(&mut self, which: u8, at: f64) -> Option<(f64, FaultKind)> {
        let rng = &mut self.rng;
        let busy = &self.busy;
        let free = |list: &[String], rng: &mut StdRng| -> Option<String> {
            let free: Vec<&String> = list
                .iter()
                .filter(|d| busy.get(*d).is_none_or(|&until| until <= at))
                .collect();
            (!free.is_empty()).then(|| free[rng.random_range(0..free.len())].clone())
        };
        let minutes = |rng: &mut StdRng, lo: f64, hi: f64| rng.random_range(lo..hi) * 60.0;
        match which {
            0 => {
                let device = free(&self.targets.elevators, rng)?;
                Some((minutes(rng, 2.0, 6.0), FaultKind::Entrapment { device }))
            }
            1 => {
                let device = free(&self.targets.fire_panels, rng)?;
                let faults = rng.random_range(1..=3);
                Some((
                    minutes(rng, 1.5, 4.0),
                    FaultKind::FirePanel { device, faults },
                ))
            }
            2 => {
                let ids: Vec<String> = self.targets.loops.iter().map(|(d, _)| d.clone()).collect();
                let device = free(&ids, rng)?;
                let building = self
                    .targets
                    .loops
                    .iter()
                    .find(|(d, _)| *d == device)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                Some((
                    minutes(rng, 12.0, 20.0),
                    FaultKind::HeatingLoss { device, building },
                ))
            }
            3 => {
                let mut all = self.targets.gates.clone();
                all.extend(self.targets.elevators.iter().cloned());
                let device = free(&all, rng)?;
                let code = [11, 12, 21, 23, 35, 47][rng.random_range(0..6)];
                Some((
                    rng.random_range(30.0..90.0),
                    FaultKind::FaultCode { device, code },
                ))
            }
            _ => {
                let device = free(&self.targets.gates, rng)?;
                Some((minutes(rng, 2.5, 4.0), FaultKind::DoorHeldOpen { device }))
            }
        }
    }
}

impl Iterator for FaultPlan {
    type Item = PlannedFault;

    fn next(&mut self) -> Option<PlannedFault> {
        // Bounded: with no target free for many draws in a row there is nothing to schedule.
        for _ in 0..1000 {
            let at = self.next_at;
            self.next_at += self.rng.random_range(GAP.0..GAP.1) * self.speed;
            let which = match self.headline.pop() {
                Some(h) => h,
                None => match self.rng.random_range(0..100) {
                    0..15 => 0,
                    15..25 => 1,
                    25..37 => 2,
                    37..82 => 3,
                    _ => 4,
                },
            };
            // A scenario whose devices are all busy gives way to another one.
            let made = [which, 3, 4, 0, 1, 2]
                .into_iter()
                .find_map(|w| self.make(w, at));
            if let Some((secs, kind)) = made {
                let secs = secs.max(MIN_REAL_S * self.speed);
                self.busy.insert(kind.device().to_owned(), at + secs);
                return Some(PlannedFault {
                    at: Duration::from_secs_f64(at),
                    duration: Duration::from_secs_f64(secs),
                    kind,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Targets {
            elevators: s(&["E-1-1", "E-1-2", "E-2-1"]),
            gates: s(&["G-N1", "G-1-1"]),
            fire_panels: s(&["FP-1", "FP-2"]),
            loops: vec![
                ("HX-1".into(), "1号楼".into()),
                ("HX-2".into(), "2号楼".into()),
            ],
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a: Vec<_> = FaultPlan::new(7, targets(), 10.0).take(200).collect();
        let b: Vec<_> = FaultPlan::new(7, targets(), 10.0).take(200).collect();
        assert_eq!(a.len(), 200);
        assert_eq!(a, b);
        let c: Vec<_> = FaultPlan::new(8, targets(), 10.0).take(200).collect();
        assert_ne!(a, c, "another seed, another schedule");
    }

    #[test]
    fn the_headline_faults_come_first_and_the_first_is_soon() {
        for seed in 0..50 {
            let plan: Vec<_> = FaultPlan::new(seed, targets(), 1.0).take(3).collect();
            assert!(matches!(plan[0].kind, FaultKind::Entrapment { .. }));
            assert!(plan[0].at <= Duration::from_secs(12), "{:?}", plan[0]);
            assert!(plan
                .iter()
                .any(|f| matches!(f.kind, FaultKind::FirePanel { .. })));
            assert!(plan
                .iter()
                .any(|f| matches!(f.kind, FaultKind::HeatingLoss { .. })));
        }
    }

    #[test]
    fn gaps_are_real_seconds_and_durations_simulated() {
        let slow: Vec<_> = FaultPlan::new(3, targets(), 1.0).take(50).collect();
        let fast: Vec<_> = FaultPlan::new(3, targets(), 100.0).take(50).collect();
        for (plan, speed) in [(&slow, 1.0), (&fast, 100.0)] {
            // 8-25 real seconds, or a multiple when every device of a draw was busy.
            let gaps: Vec<f64> = plan
                .windows(2)
                .map(|w| (w[1].at - w[0].at).as_secs_f64() / speed)
                .collect();
            assert!(gaps.iter().all(|&g| g >= 8.0 - 1e-6), "{gaps:?}");
            let within = gaps.iter().filter(|&&g| g <= 25.0 + 1e-6).count();
            assert!(within * 10 >= gaps.len() * 9, "{gaps:?}");
            for f in plan.iter() {
                // Durations are simulated, floored at 4 real seconds.
                assert!(f.duration.as_secs_f64() >= 4.0 * speed - 1e-6, "{f:?}");
                assert!(f.duration <= Duration::from_secs(20 * 60).max(Duration::from_secs(400)));
            }
        }
    }

    #[test]
    fn a_device_never_has_two_faults_at_once() {
        let plan: Vec<_> = FaultPlan::new(11, targets(), 1.0).take(500).collect();
        for (i, a) in plan.iter().enumerate() {
            for b in &plan[i + 1..] {
                if a.kind.device() == b.kind.device() {
                    assert!(b.at >= a.at + a.duration, "{a:?} overlaps {b:?}");
                }
            }
        }
    }
}
